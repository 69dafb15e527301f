//! Payload parsing, per provider. Runs only after the credential is verified.
//!
//! Fields that decide what happens (`ref`, `after`, `deleted`, Bitbucket's
//! change lists) are checked strictly: a wrong type or an invalid value is
//! [`Rejection::Malformed`]. Repository metadata (URLs, default branch) only
//! feeds optional filters and is read leniently: missing or wrongly typed
//! values are skipped. Messages name fields and JSON types, never values.

use serde_json::{Map, Value};

use super::{Event, Provider, Push, Rejection};

type Object = Map<String, Value>;

/// Longest ref or branch name accepted from a payload.
const MAX_REF_LEN: usize = 1024;
/// Longest repository URL kept from a payload.
const MAX_URL_LEN: usize = 2048;
/// Deepest nesting of arrays/objects accepted (serde_json's default limit).
const MAX_DEPTH: usize = 128;

pub(super) fn parse(provider: Provider, event: String, body: &[u8]) -> Result<Event, Rejection> {
    let is = |name: &str| event.eq_ignore_ascii_case(name);
    match provider {
        Provider::GitHub | Provider::Gitea | Provider::Forgejo => {
            if is("push") {
                github_push(&object(body)?).map(Event::Push)
            } else if is("ping") {
                Ok(Event::Ping)
            } else {
                Ok(Event::Other { event })
            }
        }
        Provider::GitLab => {
            if is("Push Hook") || is("Tag Push Hook") {
                gitlab_push(&object(body)?).map(Event::Push)
            } else if is("System Hook") {
                // System hooks carry every kind of instance event; only the
                // push kinds have a ref.
                let obj = object(body)?;
                let kind_is_push = ["object_kind", "event_name"].iter().any(|key| {
                    matches!(obj.get(*key), Some(Value::String(k)) if k == "push" || k == "tag_push")
                });
                if kind_is_push {
                    gitlab_push(&obj).map(Event::Push)
                } else {
                    Ok(Event::Other { event })
                }
            } else {
                Ok(Event::Other { event })
            }
        }
        Provider::BitbucketCloud => {
            if is("repo:push") {
                bitbucket_cloud_push(&object(body)?).map(Event::Push)
            } else {
                Ok(Event::Other { event })
            }
        }
        Provider::BitbucketServer => {
            if is("repo:refs_changed") {
                bitbucket_server_push(&object(body)?).map(Event::Push)
            } else if is("diagnostics:ping") {
                Ok(Event::Ping)
            } else {
                Ok(Event::Other { event })
            }
        }
        Provider::Generic => generic_push(body).map(Event::Push),
    }
}

fn malformed(message: impl Into<String>) -> Rejection {
    Rejection::Malformed(message.into())
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<Object, Rejection> {
    if !nesting_within(body, MAX_DEPTH) {
        return Err(malformed(format!(
            "invalid JSON: nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(malformed(format!(
            "expected a JSON object, got {}",
            kind(&other)
        ))),
        Err(e) => Err(match e.classify() {
            // These messages are fixed texts plus a position, never input.
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                malformed(format!("invalid JSON: {e}"))
            }
            _ => malformed("invalid JSON"),
        }),
    }
}

/// Whether arrays and objects nest at most `max` deep. serde_json has the
/// same limit (128) unless its `unbounded_depth` feature is on somewhere in
/// the build; this scan keeps deep input from reaching the recursive parser
/// (or the recursive drop of a `Value`) either way. Invalid JSON is left to
/// the parser to report.
fn nesting_within(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A field, with `null` treated as absent.
fn field<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A nested field reached through objects (lenient: `None` on any mismatch).
fn path<'a>(value: Option<&'a Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .try_fold(value?, |v, key| v.as_object()?.get(*key))
}

fn opt_bool(obj: &Object, key: &str, what: &str) -> Result<Option<bool>, Rejection> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(malformed(format!(
            "`{what}` is {}, expected a boolean",
            kind(other)
        ))),
    }
}

fn opt_str<'a>(obj: &'a Object, key: &str, what: &str) -> Result<Option<&'a str>, Rejection> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(malformed(format!(
            "`{what}` is {}, expected a string",
            kind(other)
        ))),
    }
}

fn opt_object<'a>(obj: &'a Object, key: &str, what: &str) -> Result<Option<&'a Object>, Rejection> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(malformed(format!(
            "`{what}` is {}, expected an object",
            kind(other)
        ))),
    }
}

fn required_array<'a>(obj: &'a Object, key: &str, what: &str) -> Result<&'a [Value], Rejection> {
    match field(obj, key) {
        Some(Value::Array(a)) => Ok(a),
        None => Err(malformed(format!("`{what}` is missing"))),
        Some(other) => Err(malformed(format!(
            "`{what}` is {}, expected an array",
            kind(other)
        ))),
    }
}

/// Characters git never allows in a ref name (`git check-ref-format`), plus
/// the control characters, which must not reach logs or responses.
fn ref_chars_ok(name: &str) -> bool {
    !name
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
}

/// A full ref name as sent by a forge: `refs/<something>`, bounded, without
/// characters git forbids.
fn valid_full_ref(name: &str) -> bool {
    name.len() <= MAX_REF_LEN
        && name
            .strip_prefix("refs/")
            .is_some_and(|rest| !rest.is_empty())
        && ref_chars_ok(name)
}

/// A short branch or tag name (no `refs/` prefix).
fn valid_short_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_REF_LEN && !name.starts_with('/') && ref_chars_ok(name)
}

fn full_ref(name: &str, what: &str) -> Result<String, Rejection> {
    if valid_full_ref(name) {
        Ok(name.to_owned())
    } else {
        Err(malformed(format!(
            "`{what}` is not a full ref name (refs/heads/... or refs/tags/...)"
        )))
    }
}

fn required_ref(obj: &Object, key: &str) -> Result<String, Rejection> {
    match opt_str(obj, key, key)? {
        Some(name) => full_ref(name, key),
        None => Err(malformed(format!("`{key}` is missing"))),
    }
}

/// A commit id field.
enum Commit {
    Absent,
    /// All zeros: the ref was deleted.
    Zero,
    /// 40 lowercase hex digits.
    Id(String),
}

fn commit(value: Option<&Value>, what: &str) -> Result<Commit, Rejection> {
    let s = match value {
        None | Some(Value::Null) => return Ok(Commit::Absent),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(malformed(format!(
                "`{what}` is {}, expected a string",
                kind(other)
            )))
        }
    };
    if s.is_empty() {
        return Ok(Commit::Absent);
    }
    // Deletions are all zeros (40, or 64 for a SHA-256 repository).
    if (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b == b'0') {
        return Ok(Commit::Zero);
    }
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Commit::Id(s.to_ascii_lowercase()));
    }
    Err(malformed(format!("`{what}` is not a 40-hex commit id")))
}

/// `(after, deleted)` from a commit field and an explicit deletion flag.
fn resolve(commit: Commit, deleted: bool) -> (Option<String>, bool) {
    match commit {
        Commit::Id(id) if !deleted => (Some(id), false),
        Commit::Id(_) | Commit::Zero => (None, true),
        Commit::Absent => (None, deleted),
    }
}

/// Adds a URL-looking string (lenient: anything else is skipped).
fn add_url(urls: &mut Vec<String>, value: Option<&Value>) {
    let Some(url) = value.and_then(Value::as_str).map(str::trim) else {
        return;
    };
    let usable = !url.is_empty()
        && url.len() <= MAX_URL_LEN
        && !url.chars().any(char::is_control)
        && !urls.iter().any(|u| u == url);
    if usable {
        urls.push(url.to_owned());
    }
}

fn add_urls(urls: &mut Vec<String>, object: Option<&Value>, keys: &[&str]) {
    for key in keys {
        add_url(urls, path(object, &[key]));
    }
}

/// Hrefs of a Bitbucket link list (`[{"href": ...}, ...]`).
fn add_link_list(urls: &mut Vec<String>, list: Option<&Value>) {
    if let Some(Value::Array(links)) = list {
        for link in links {
            add_url(urls, path(Some(link), &["href"]));
        }
    }
}

/// A default branch name, short (a `refs/heads/` prefix is removed).
fn default_branch(value: Option<&Value>) -> Option<String> {
    let name = value?.as_str()?;
    let name = name.strip_prefix("refs/heads/").unwrap_or(name);
    valid_short_name(name).then(|| name.to_owned())
}

/// GitHub, Gitea and Forgejo `push`.
fn github_push(obj: &Object) -> Result<Push, Rejection> {
    let git_ref = required_ref(obj, "ref")?;
    let deleted = opt_bool(obj, "deleted", "deleted")?.unwrap_or(false);
    let (after, deleted) = resolve(commit(field(obj, "after"), "after")?, deleted);
    let repository = field(obj, "repository");
    let mut repo_urls = Vec::new();
    add_urls(
        &mut repo_urls,
        repository,
        &["clone_url", "ssh_url", "html_url", "git_url", "url"],
    );
    Ok(Push {
        git_ref: Some(git_ref),
        after,
        deleted,
        repo_urls,
        default_branch: default_branch(path(repository, &["default_branch"])),
        other_refs: Vec::new(),
    })
}

/// GitLab `Push Hook`, `Tag Push Hook` and push-kind `System Hook`.
fn gitlab_push(obj: &Object) -> Result<Push, Rejection> {
    let git_ref = required_ref(obj, "ref")?;
    let mut new = commit(field(obj, "after"), "after")?;
    if let Commit::Absent = new {
        new = commit(field(obj, "checkout_sha"), "checkout_sha")?;
    }
    let (after, deleted) = resolve(new, false);
    let project = field(obj, "project");
    let repository = field(obj, "repository");
    let mut repo_urls = Vec::new();
    add_urls(
        &mut repo_urls,
        project,
        &[
            "git_http_url",
            "git_ssh_url",
            "web_url",
            "http_url",
            "ssh_url",
            "homepage",
            "url",
        ],
    );
    add_urls(
        &mut repo_urls,
        repository,
        &["git_http_url", "git_ssh_url", "homepage", "url"],
    );
    Ok(Push {
        git_ref: Some(git_ref),
        after,
        deleted,
        repo_urls,
        default_branch: default_branch(path(project, &["default_branch"])),
        other_refs: Vec::new(),
    })
}

/// One ref change of a multi-ref payload.
struct Change {
    git_ref: String,
    after: Option<String>,
    deleted: bool,
}

/// The first change becomes the primary ref; the rest go to `other_refs`.
fn multi_ref_push(
    changes: Vec<Change>,
    repo_urls: Vec<String>,
    default_branch: Option<String>,
    what: &str,
) -> Result<Push, Rejection> {
    let mut changes = changes.into_iter();
    let Some(first) = changes.next() else {
        return Err(malformed(format!("`{what}` names no branch or tag")));
    };
    Ok(Push {
        git_ref: Some(first.git_ref),
        after: first.after,
        deleted: first.deleted,
        repo_urls,
        default_branch,
        other_refs: changes.map(|c| (c.git_ref, c.after)).collect(),
    })
}

/// Bitbucket Cloud `repo:push`: `push.changes[].{new,old}`.
fn bitbucket_cloud_push(obj: &Object) -> Result<Push, Rejection> {
    let Some(push) = opt_object(obj, "push", "push")? else {
        return Err(malformed("`push` is missing"));
    };
    let mut changes = Vec::new();
    for change in required_array(push, "changes", "push.changes")? {
        let Value::Object(change) = change else {
            return Err(malformed(format!(
                "an entry of `push.changes` is {}, expected an object",
                kind(change)
            )));
        };
        let new = opt_object(change, "new", "push.changes[].new")?;
        let old = opt_object(change, "old", "push.changes[].old")?;
        let closed = opt_bool(change, "closed", "push.changes[].closed")?.unwrap_or(false);
        let (state, deleted) = match (new, old) {
            (Some(new), _) => (new, closed),
            (None, Some(old)) => (old, true),
            (None, None) => {
                return Err(malformed(
                    "an entry of `push.changes` has neither `new` nor `old`",
                ))
            }
        };
        let Some(git_ref) = bitbucket_cloud_ref(state)? else {
            continue; // not a branch or tag (e.g. a Mercurial bookmark)
        };
        let hash = path(state.get("target"), &["hash"]);
        let (after, deleted) = resolve(commit(hash, "push.changes[].new.target.hash")?, deleted);
        changes.push(Change {
            git_ref,
            after,
            deleted,
        });
    }
    let repository = field(obj, "repository");
    let mut repo_urls = Vec::new();
    add_url(&mut repo_urls, path(repository, &["links", "html", "href"]));
    add_link_list(&mut repo_urls, path(repository, &["links", "clone"]));
    let default_branch = default_branch(path(repository, &["mainbranch", "name"]));
    multi_ref_push(changes, repo_urls, default_branch, "push.changes")
}

/// The full ref name of a Bitbucket Cloud ref state; `None` for kinds that
/// are neither branches nor tags.
fn bitbucket_cloud_ref(state: &Object) -> Result<Option<String>, Rejection> {
    let Some(kind) = opt_str(state, "type", "push.changes[].new.type")? else {
        return Err(malformed("`push.changes[].new.type` is missing"));
    };
    let prefix = match kind {
        "branch" | "named_branch" => "refs/heads/",
        "tag" | "annotated_tag" => "refs/tags/",
        _ => return Ok(None),
    };
    let Some(name) = opt_str(state, "name", "push.changes[].new.name")? else {
        return Err(malformed("`push.changes[].new.name` is missing"));
    };
    if !valid_short_name(name) {
        return Err(malformed(
            "`push.changes[].new.name` is not a valid branch or tag name",
        ));
    }
    full_ref(&format!("{prefix}{name}"), "push.changes[].new.name").map(Some)
}

/// Bitbucket Server/Data Center `repo:refs_changed`: `changes[]`.
fn bitbucket_server_push(obj: &Object) -> Result<Push, Rejection> {
    let mut changes = Vec::new();
    for change in required_array(obj, "changes", "changes")? {
        let Value::Object(change) = change else {
            return Err(malformed(format!(
                "an entry of `changes` is {}, expected an object",
                kind(change)
            )));
        };
        let id = match path(change.get("ref"), &["id"]) {
            Some(Value::String(id)) => Some(id.as_str()),
            _ => opt_str(change, "refId", "changes[].refId")?,
        };
        let Some(id) = id else {
            return Err(malformed(
                "an entry of `changes` has neither `ref.id` nor `refId`",
            ));
        };
        let git_ref = full_ref(id, "changes[].ref.id")?;
        let deleted = opt_str(change, "type", "changes[].type")?
            .is_some_and(|t| t.eq_ignore_ascii_case("DELETE"));
        let (after, deleted) = resolve(
            commit(field(change, "toHash"), "changes[].toHash")?,
            deleted,
        );
        changes.push(Change {
            git_ref,
            after,
            deleted,
        });
    }
    let links = path(field(obj, "repository"), &["links"]);
    let mut repo_urls = Vec::new();
    add_link_list(&mut repo_urls, path(links, &["clone"]));
    add_link_list(&mut repo_urls, path(links, &["self"]));
    multi_ref_push(changes, repo_urls, None, "changes")
}

/// Generic: an empty body, `{}`, or `{"ref": "refs/...", "after": "<sha>"}`
/// (`deleted` and GitHub/GitLab-shaped `repository`/`project` URLs are read
/// too). No ref means "sync now".
fn generic_push(body: &[u8]) -> Result<Push, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Push::default());
    }
    let obj = object(body)?;
    let git_ref = match opt_str(&obj, "ref", "ref")? {
        Some(name) => Some(full_ref(name, "ref")?),
        None => None,
    };
    let deleted = opt_bool(&obj, "deleted", "deleted")?.unwrap_or(false);
    let (after, deleted) = resolve(commit(field(&obj, "after"), "after")?, deleted);
    let mut repo_urls = Vec::new();
    add_urls(
        &mut repo_urls,
        field(&obj, "repository"),
        &[
            "clone_url",
            "ssh_url",
            "html_url",
            "git_http_url",
            "git_ssh_url",
        ],
    );
    add_urls(
        &mut repo_urls,
        field(&obj, "project"),
        &["git_http_url", "git_ssh_url", "web_url"],
    );
    Ok(Push {
        git_ref,
        after,
        deleted,
        repo_urls,
        default_branch: None,
        other_refs: Vec::new(),
    })
}
