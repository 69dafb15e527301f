//! Unit and property tests of the webhook module. Payloads are hand-written
//! in the shape each forge documents; commit ids are made up.

use super::*;
use http::{HeaderName, HeaderValue};
use proptest::prelude::*;

const SECRET: &str = "s3cret-value";
const OLD_SECRET: &str = "previous-secret";
const SHA_A: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const SHA_B: &str = "d670460b4b4aece5915caf5c68d12f560a9fe3e4";
const ZEROS: &str = "0000000000000000000000000000000000000000";

fn hmac256(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    Mac::update(&mut mac, body);
    hex::encode(mac.finalize().into_bytes())
}

fn hmac512(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    Mac::update(&mut mac, body);
    hex::encode(mac.finalize().into_bytes())
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn secrets(list: &[&str]) -> Secrets {
    Secrets::new(list.iter().map(|s| s.as_bytes().to_vec()).collect())
}

fn run(pairs: &[(&str, &str)], body: &[u8]) -> Result<(Provider, Event), (Provider, Rejection)> {
    verify_and_parse(&headers(pairs), body, &secrets(&[SECRET]), false)
}

fn expect_push(
    result: Result<(Provider, Event), (Provider, Rejection)>,
    provider: Provider,
) -> Push {
    match result {
        Ok((p, Event::Push(push))) => {
            assert_eq!(p, provider);
            push
        }
        other => panic!("expected a {provider} push, got {other:?}"),
    }
}

fn expect_rejection(
    result: Result<(Provider, Event), (Provider, Rejection)>,
    provider: Provider,
) -> Rejection {
    match result {
        Err((p, rejection)) => {
            assert_eq!(p, provider);
            rejection
        }
        other => panic!("expected a {provider} rejection, got {other:?}"),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- GitHub

#[test]
fn github_published_test_vector() {
    let secret = "It's a Secret to Everybody";
    let body = b"Hello, World!";
    let expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(hmac256(secret, body), expected);
    let sig = format!("sha256={expected}");
    let s = secrets(&[secret]);

    let ping = headers(&[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sig)]);
    assert_eq!(
        verify_and_parse(&ping, body, &s, false),
        Ok((Provider::GitHub, Event::Ping))
    );

    let push = headers(&[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)]);
    let rejection = expect_rejection(verify_and_parse(&push, body, &s, false), Provider::GitHub);
    assert!(
        matches!(rejection, Rejection::Malformed(_)),
        "{rejection:?}"
    );

    // One flipped hex digit no longer verifies.
    let bad = sig.replace("757107", "757108");
    let push = headers(&[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &bad)]);
    assert_eq!(
        verify_and_parse(&push, body, &s, false),
        Err((Provider::GitHub, Rejection::BadSignature))
    );
}

/// GitHub's default content type is form-encoded (`payload=<JSON>`): once
/// verified, it is refused with a message that says to choose JSON; a
/// generic sender (`curl -d` labels JSON as form-encoded) is not judged by it.
#[test]
fn form_encoded_deliveries_say_to_choose_json() {
    let body = format!("payload={}", github_push_body().replace('"', "%22"));
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    for (event_header, provider) in [
        ("X-GitHub-Event", Provider::GitHub),
        ("X-Gitea-Event", Provider::Gitea),
        ("X-Forgejo-Event", Provider::Forgejo),
    ] {
        for (event, content_type) in [
            ("push", "application/x-www-form-urlencoded"),
            ("ping", "Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        ] {
            let pairs = [
                (event_header, event),
                ("Content-Type", content_type),
                ("X-Hub-Signature-256", &sig),
            ];
            let rejection = expect_rejection(run(&pairs, body.as_bytes()), provider);
            assert_eq!(rejection, Rejection::FormEncoded, "{provider} {event}");
            assert!(rejection.to_string().contains("application/json"));
        }
    }
    // Unverified: the signature is judged first.
    let wrong = format!("sha256={}", hmac256("nope", body.as_bytes()));
    let pairs = [
        ("X-GitHub-Event", "push"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Hub-Signature-256", &wrong),
    ];
    assert_eq!(
        run(&pairs, body.as_bytes()),
        Err((Provider::GitHub, Rejection::BadSignature))
    );
    // A generic "sync now" sent with curl -d.
    let json = br#"{"ref": "refs/heads/main"}"#;
    let sig = format!("sha256={}", hmac256(SECRET, json));
    let pairs = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Signature", &sig),
    ];
    expect_push(run(&pairs, json), Provider::Generic);
}

fn github_push_body() -> String {
    format!(
        r#"{{
  "ref": "refs/heads/main",
  "before": "{SHA_A}",
  "after": "{}",
  "repository": {{
    "id": 1296269,
    "name": "site",
    "full_name": "octo-org/site",
    "private": false,
    "html_url": "https://github.com/octo-org/site",
    "url": "https://github.com/octo-org/site",
    "git_url": "git://github.com/octo-org/site.git",
    "ssh_url": "git@github.com:octo-org/site.git",
    "clone_url": "https://github.com/octo-org/site.git",
    "default_branch": "main",
    "master_branch": "main",
    "stargazers": 3
  }},
  "pusher": {{"name": "monalisa", "email": "mona@example.com"}},
  "sender": {{"login": "monalisa", "id": 1}},
  "created": false,
  "deleted": false,
  "forced": false,
  "base_ref": null,
  "compare": "https://github.com/octo-org/site/compare/4b825dc642cb...d670460b4b4a",
  "commits": [{{"id": "{SHA_B}", "message": "Update index.html", "distinct": true,
                "added": [], "removed": [], "modified": ["index.html"]}}],
  "head_commit": {{"id": "{SHA_B}", "message": "Update index.html"}}
}}"#,
        SHA_B.to_uppercase()
    )
}

fn github_headers<'a>(event: &'a str, sig: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("X-GitHub-Hook-ID", "292430182"),
        ("User-Agent", "GitHub-Hookshot/044aadd"),
        ("Content-Type", "application/json"),
        ("X-Hub-Signature-256", sig),
    ]
}

#[test]
fn github_push_is_parsed() {
    let body = github_push_body();
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let push = expect_push(
        run(&github_headers("push", &sig), body.as_bytes()),
        Provider::GitHub,
    );
    assert_eq!(
        push,
        Push {
            git_ref: Some("refs/heads/main".into()),
            after: Some(SHA_B.into()), // lowercased
            deleted: false,
            repo_urls: strings(&[
                "https://github.com/octo-org/site.git",
                "git@github.com:octo-org/site.git",
                "https://github.com/octo-org/site",
                "git://github.com/octo-org/site.git",
            ]),
            default_branch: Some("main".into()),
            other_refs: vec![],
        }
    );
    assert_eq!(ref_matches("HEAD", &push), Ok(()));
    assert_eq!(push.after_for("main"), Some(SHA_B));
    assert!(repo_matches(
        "https://GitHub.com/octo-org/site",
        &push.repo_urls
    ));
}

#[test]
fn github_signature_failures() {
    let body = github_push_body();
    let good = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let wrong = format!("sha256={}", hmac256("not-the-secret", body.as_bytes()));
    let sha1_prefix = good.replace("sha256=", "sha1=");
    let cases: Vec<(Vec<(&str, &str)>, Rejection)> = vec![
        (github_headers("push", &wrong), Rejection::BadSignature),
        (
            vec![("X-GitHub-Event", "push")],
            Rejection::MissingSignature,
        ),
        // Bad hex, truncated, wrong prefix, bare hex, empty.
        (
            github_headers(
                "push",
                "sha256=zz07ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            ),
            Rejection::BadSignature,
        ),
        (github_headers("push", &good[..40]), Rejection::BadSignature),
        (
            github_headers("push", &sha1_prefix),
            Rejection::BadSignature,
        ),
        (
            github_headers("push", good.trim_start_matches("sha256=")),
            Rejection::BadSignature,
        ),
        // An empty digest is no signature at all.
        (github_headers("push", ""), Rejection::MissingSignature),
        (
            github_headers("push", "sha256="),
            Rejection::MissingSignature,
        ),
        // Legacy sha1 alone is refused, not treated as unsigned.
        (
            vec![
                ("X-GitHub-Event", "push"),
                (
                    "X-Hub-Signature",
                    "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6",
                ),
            ],
            Rejection::BadSignature,
        ),
    ];
    for (pairs, want) in cases {
        assert_eq!(
            run(&pairs, body.as_bytes()),
            Err((Provider::GitHub, want.clone())),
            "{pairs:?}"
        );
    }
    // Upper-case hex and prefix are accepted.
    let upper = good.to_uppercase();
    expect_push(
        run(&github_headers("push", &upper), body.as_bytes()),
        Provider::GitHub,
    );
}

#[test]
fn sha1_rejection_says_to_use_sha256() {
    let pairs = [
        ("X-GitHub-Event", "push"),
        (
            "X-Hub-Signature",
            "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6",
        ),
    ];
    // Even when unsigned requests are allowed.
    let result = verify_and_parse(&headers(&pairs), b"{}", &secrets(&[SECRET]), true);
    let rejection = expect_rejection(result, Provider::GitHub);
    assert_eq!(rejection, Rejection::BadSignature);
    let message = rejection.to_string();
    assert!(message.contains("sha1"), "{message}");
    assert!(
        message.contains("X-Hub-Signature-256: sha256="),
        "{message}"
    );
}

#[test]
fn secret_rotation_accepts_any_configured_secret() {
    let body = github_push_body();
    let both = secrets(&[SECRET, OLD_SECRET]);
    for secret in [SECRET, OLD_SECRET] {
        let sig = format!("sha256={}", hmac256(secret, body.as_bytes()));
        let result = verify_and_parse(
            &headers(&github_headers("push", &sig)),
            body.as_bytes(),
            &both,
            false,
        );
        expect_push(result, Provider::GitHub);
    }
    let sig = format!("sha256={}", hmac256("third", body.as_bytes()));
    let result = verify_and_parse(
        &headers(&github_headers("push", &sig)),
        body.as_bytes(),
        &both,
        false,
    );
    assert_eq!(result, Err((Provider::GitHub, Rejection::BadSignature)));
}

#[test]
fn no_secrets_configured() {
    let body = github_push_body();
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let none = Secrets::new(vec![]);
    for allow_unsigned in [false, true] {
        let result = verify_and_parse(
            &headers(&github_headers("push", &sig)),
            body.as_bytes(),
            &none,
            allow_unsigned,
        );
        assert_eq!(result, Err((Provider::GitHub, Rejection::BadSignature)));
    }
    let unsigned = headers(&[("X-GitHub-Event", "push")]);
    assert_eq!(
        verify_and_parse(&unsigned, body.as_bytes(), &none, false),
        Err((Provider::GitHub, Rejection::MissingSignature))
    );
    let push = expect_push(
        verify_and_parse(&unsigned, body.as_bytes(), &none, true),
        Provider::GitHub,
    );
    assert_eq!(push.git_ref.as_deref(), Some("refs/heads/main"));
}

#[test]
fn allow_unsigned_still_rejects_wrong_signatures() {
    let body = github_push_body();
    let wrong = format!("sha256={}", hmac256("nope", body.as_bytes()));
    let result = verify_and_parse(
        &headers(&github_headers("push", &wrong)),
        body.as_bytes(),
        &secrets(&[SECRET]),
        true,
    );
    assert_eq!(result, Err((Provider::GitHub, Rejection::BadSignature)));
}

#[test]
fn github_tag_push_and_deletion() {
    let tag = format!(
        r#"{{"ref":"refs/tags/v1.2.0","before":"{ZEROS}","after":"{SHA_A}","created":true,"deleted":false,
            "base_ref":"refs/heads/main","repository":{{"clone_url":"https://github.com/o/r.git","default_branch":"main"}}}}"#
    );
    let sig = format!("sha256={}", hmac256(SECRET, tag.as_bytes()));
    let push = expect_push(
        run(&github_headers("push", &sig), tag.as_bytes()),
        Provider::GitHub,
    );
    assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v1.2.0"));
    assert_eq!(push.after.as_deref(), Some(SHA_A));
    assert!(!push.deleted);
    assert_eq!(ref_matches("v1.2.0", &push), Ok(()));
    assert!(ref_matches("HEAD", &push).is_err());

    let delete = format!(
        r#"{{"ref":"refs/heads/feature","before":"{SHA_A}","after":"{ZEROS}","created":false,"deleted":true,
            "head_commit":null,"repository":{{"clone_url":"https://github.com/o/r.git"}}}}"#
    );
    let sig = format!("sha256={}", hmac256(SECRET, delete.as_bytes()));
    let push = expect_push(
        run(&github_headers("push", &sig), delete.as_bytes()),
        Provider::GitHub,
    );
    assert_eq!(push.git_ref.as_deref(), Some("refs/heads/feature"));
    assert_eq!(push.after, None);
    assert!(push.deleted);

    // `deleted: true` alone is enough.
    let flagged = format!(r#"{{"ref":"refs/heads/x","after":"{SHA_A}","deleted":true}}"#);
    let sig = format!("sha256={}", hmac256(SECRET, flagged.as_bytes()));
    let push = expect_push(
        run(&github_headers("push", &sig), flagged.as_bytes()),
        Provider::GitHub,
    );
    assert!(push.deleted);
    assert_eq!(push.after, None);
}

#[test]
fn github_other_events_do_not_need_a_body_shape() {
    for body in [&b"not json at all"[..], b"[]", b"", b"\xff\xfe"] {
        let sig = format!("sha256={}", hmac256(SECRET, body));
        assert_eq!(
            run(&github_headers("issues", &sig), body),
            Ok((
                Provider::GitHub,
                Event::Other {
                    event: "issues".into()
                }
            ))
        );
        assert_eq!(
            run(&github_headers("ping", &sig), body),
            Ok((Provider::GitHub, Event::Ping))
        );
    }
    // Event names are bounded.
    let long = "x".repeat(1000);
    let sig = format!("sha256={}", hmac256(SECRET, b"{}"));
    match run(&github_headers(&long, &sig), b"{}") {
        Ok((_, Event::Other { event })) => assert_eq!(event.len(), MAX_EVENT_LEN),
        other => panic!("{other:?}"),
    }
}

// ------------------------------------------------------- Gitea / Forgejo

fn gitea_push_body(secret_in_body: bool) -> String {
    let secret = if secret_in_body {
        format!(r#""secret": "{SECRET}","#)
    } else {
        String::new()
    };
    format!(
        r#"{{
  {secret}
  "ref": "refs/heads/develop",
  "before": "{SHA_A}",
  "after": "{SHA_B}",
  "compare_url": "https://git.example.org/team/site/compare/4b825dc642cb...d670460b4b4a",
  "commits": [{{"id": "{SHA_B}", "message": "fix\n", "url": "https://git.example.org/team/site/commit/{SHA_B}"}}],
  "total_commits": 1,
  "repository": {{
    "id": 7,
    "owner": {{"login": "team"}},
    "name": "site",
    "full_name": "team/site",
    "html_url": "https://git.example.org/team/site",
    "ssh_url": "ssh://git@git.example.org:2222/team/site.git",
    "clone_url": "https://git.example.org/team/site.git",
    "default_branch": "develop"
  }},
  "pusher": {{"login": "dev"}},
  "sender": {{"login": "dev"}}
}}"#
    )
}

#[test]
fn gitea_push_is_parsed() {
    let body = gitea_push_body(false);
    let bare = hmac256(SECRET, body.as_bytes());
    let prefixed = format!("sha256={bare}");
    let pairs = [
        ("X-Gitea-Event", "push"),
        ("X-Gitea-Event-Type", "push"),
        ("X-Gitea-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
        ("X-Gogs-Event", "push"),
        ("X-GitHub-Event", "push"),
        ("X-Gitea-Signature", &bare),
        ("X-Gogs-Signature", &bare),
        (
            "X-Hub-Signature",
            "sha1=0000000000000000000000000000000000000000",
        ),
        ("X-Hub-Signature-256", &prefixed),
    ];
    let push = expect_push(run(&pairs, body.as_bytes()), Provider::Gitea);
    assert_eq!(push.git_ref.as_deref(), Some("refs/heads/develop"));
    assert_eq!(push.after.as_deref(), Some(SHA_B));
    assert_eq!(push.default_branch.as_deref(), Some("develop"));
    // html_url matches the scp-like form; the ssh_url alone (port 2222) would not.
    assert!(repo_matches(
        "git@git.example.org:team/site.git",
        &push.repo_urls
    ));
    let ssh_only = strings(&["ssh://git@git.example.org:2222/team/site.git"]);
    assert!(!repo_matches(
        "git@git.example.org:team/site.git",
        &ssh_only
    ));
    assert!(repo_matches(
        "https://git.example.org/team/site",
        &push.repo_urls
    ));
    assert!(repo_matches(
        "ssh://git.example.org:2222/team/site",
        &push.repo_urls
    ));

    let wrong = hmac256("other", body.as_bytes());
    let pairs = [
        ("X-Gitea-Event", "push"),
        ("X-Gitea-Signature", wrong.as_str()),
    ];
    assert_eq!(
        run(&pairs, body.as_bytes()),
        Err((Provider::Gitea, Rejection::BadSignature))
    );
    assert_eq!(
        run(&[("X-Gitea-Event", "push")], body.as_bytes()),
        Err((Provider::Gitea, Rejection::MissingSignature))
    );
    // Only the GitHub-style alias present: still verifies.
    let pairs = [
        ("X-Gitea-Event", "push"),
        ("X-Hub-Signature-256", prefixed.as_str()),
    ];
    expect_push(run(&pairs, body.as_bytes()), Provider::Gitea);
    // A `sha256=` prefix on the bare-hex header is wrong.
    let pairs = [
        ("X-Gitea-Event", "push"),
        ("X-Gitea-Signature", prefixed.as_str()),
    ];
    assert_eq!(
        run(&pairs, body.as_bytes()),
        Err((Provider::Gitea, Rejection::BadSignature))
    );
}

#[test]
fn gitea_hook_without_secret_is_unsigned() {
    // What Gitea sends when the hook has no secret: empty digests.
    let body = gitea_push_body(false);
    let pairs = [
        ("X-Gitea-Event", "push"),
        ("X-GitHub-Event", "push"),
        ("X-Gitea-Signature", ""),
        ("X-Gogs-Signature", ""),
        ("X-Hub-Signature", "sha1="),
        ("X-Hub-Signature-256", "sha256="),
    ];
    let map = headers(&pairs);
    let s = secrets(&[SECRET]);
    assert_eq!(
        verify_and_parse(&map, body.as_bytes(), &s, false),
        Err((Provider::Gitea, Rejection::MissingSignature))
    );
    let push = expect_push(
        verify_and_parse(&map, body.as_bytes(), &s, true),
        Provider::Gitea,
    );
    assert_eq!(push.git_ref.as_deref(), Some("refs/heads/develop"));
    // An empty preferred header does not hide a real alias.
    let sig = format!("sha256={}", hmac256("wrong", body.as_bytes()));
    let pairs = [
        ("X-Gitea-Event", "push"),
        ("X-Gitea-Signature", ""),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    assert_eq!(
        verify_and_parse(&headers(&pairs), body.as_bytes(), &s, true),
        Err((Provider::Gitea, Rejection::BadSignature))
    );
}

#[test]
fn forgejo_is_detected_before_gitea_and_github() {
    let body = gitea_push_body(true);
    let bare = hmac256(SECRET, body.as_bytes());
    let prefixed = format!("sha256={bare}");
    let pairs = [
        ("X-Forgejo-Event", "push"),
        ("X-Forgejo-Event-Type", "push"),
        ("X-Forgejo-Delivery", "a6a2c9a3-4b5e-4c1e-9ad1-1bb0f2a4e6d9"),
        ("X-Gitea-Event", "push"),
        ("X-Gogs-Event", "push"),
        ("X-GitHub-Event", "push"),
        ("X-Forgejo-Signature", &bare),
        ("X-Gitea-Signature", &bare),
        ("X-Hub-Signature-256", &prefixed),
    ];
    let push = expect_push(run(&pairs, body.as_bytes()), Provider::Forgejo);
    assert_eq!(push.git_ref.as_deref(), Some("refs/heads/develop"));

    // Rotation with the second secret.
    let old = hmac256(OLD_SECRET, body.as_bytes());
    let pairs = [
        ("X-Forgejo-Event", "push"),
        ("X-Forgejo-Signature", old.as_str()),
    ];
    let result = verify_and_parse(
        &headers(&pairs),
        body.as_bytes(),
        &secrets(&[SECRET, OLD_SECRET]),
        false,
    );
    expect_push(result, Provider::Forgejo);

    let wrong = hmac256("x", body.as_bytes());
    let pairs = [
        ("X-Forgejo-Event", "push"),
        ("X-Forgejo-Signature", wrong.as_str()),
    ];
    assert_eq!(
        run(&pairs, body.as_bytes()),
        Err((Provider::Forgejo, Rejection::BadSignature))
    );
}

#[test]
fn rejection_messages_never_quote_the_body() {
    // Older Forgejo puts the secret in the body; a malformed field must not echo it.
    let bodies = [
        format!(r#"{{"secret":"{SECRET}","ref":"refs/heads/main","after":"{SECRET}"}}"#),
        format!(r#"{{"secret":"{SECRET}","ref":"{SECRET}"}}"#),
        format!(r#"{{"secret":"{SECRET}","ref":["{SECRET}"]}}"#),
        format!(r#"{{"secret":"{SECRET}","ref":"refs/heads/main" "{SECRET}"}}"#),
        format!(r#"{{"secret":"{SECRET}""#),
    ];
    for body in bodies {
        let bare = hmac256(SECRET, body.as_bytes());
        let pairs = [
            ("X-Forgejo-Event", "push"),
            ("X-Forgejo-Signature", bare.as_str()),
        ];
        let rejection = expect_rejection(run(&pairs, body.as_bytes()), Provider::Forgejo);
        let message = rejection.to_string();
        assert!(matches!(rejection, Rejection::Malformed(_)), "{message}");
        assert!(!message.contains(SECRET), "{message}");
    }
    assert_eq!(
        format!("{:?}", secrets(&[SECRET, OLD_SECRET])),
        "Secrets { count: 2 }"
    );
}

// ---------------------------------------------------------------- GitLab

fn gitlab_push_body(kind: &str, git_ref: &str, after: &str, checkout: &str) -> String {
    format!(
        r#"{{
  "object_kind": "{kind}",
  "event_name": "{kind}",
  "before": "{SHA_A}",
  "after": "{after}",
  "ref": "{git_ref}",
  "ref_protected": true,
  "checkout_sha": {checkout},
  "message": null,
  "user_id": 4,
  "user_name": "Jane Doe",
  "user_username": "jdoe",
  "project_id": 15,
  "project": {{
    "id": 15,
    "name": "Handbook",
    "web_url": "https://gitlab.example.com/docs/handbook",
    "git_ssh_url": "git@gitlab.example.com:docs/handbook.git",
    "git_http_url": "https://gitlab.example.com/docs/handbook.git",
    "namespace": "docs",
    "visibility_level": 20,
    "path_with_namespace": "docs/handbook",
    "default_branch": "trunk",
    "ci_config_path": null,
    "homepage": "https://gitlab.example.com/docs/handbook",
    "url": "git@gitlab.example.com:docs/handbook.git",
    "ssh_url": "git@gitlab.example.com:docs/handbook.git",
    "http_url": "https://gitlab.example.com/docs/handbook.git"
  }},
  "commits": [],
  "total_commits_count": 0,
  "repository": {{
    "name": "Handbook",
    "url": "git@gitlab.example.com:docs/handbook.git",
    "homepage": "https://gitlab.example.com/docs/handbook",
    "git_http_url": "https://gitlab.example.com/docs/handbook.git",
    "git_ssh_url": "git@gitlab.example.com:docs/handbook.git",
    "visibility_level": 20
  }}
}}"#
    )
}

#[test]
fn gitlab_push_tag_push_and_deletion() {
    let body = gitlab_push_body("push", "refs/heads/trunk", SHA_B, &format!("\"{SHA_B}\""));
    let pairs = [
        ("X-Gitlab-Event", "Push Hook"),
        (
            "X-Gitlab-Event-UUID",
            "13792a34-cac6-4fda-95a8-c58e00a3954e",
        ),
        ("X-Gitlab-Instance", "https://gitlab.example.com"),
        ("X-Gitlab-Token", SECRET),
    ];
    let push = expect_push(run(&pairs, body.as_bytes()), Provider::GitLab);
    assert_eq!(
        push,
        Push {
            git_ref: Some("refs/heads/trunk".into()),
            after: Some(SHA_B.into()),
            deleted: false,
            repo_urls: strings(&[
                "https://gitlab.example.com/docs/handbook.git",
                "git@gitlab.example.com:docs/handbook.git",
                "https://gitlab.example.com/docs/handbook",
            ]),
            default_branch: Some("trunk".into()),
            other_refs: vec![],
        }
    );
    assert_eq!(ref_matches("HEAD", &push), Ok(()));

    let tag = gitlab_push_body("tag_push", "refs/tags/v2", SHA_A, &format!("\"{SHA_A}\""));
    let pairs = [
        ("X-Gitlab-Event", "Tag Push Hook"),
        ("X-Gitlab-Token", SECRET),
    ];
    let push = expect_push(run(&pairs, tag.as_bytes()), Provider::GitLab);
    assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v2"));
    assert_eq!(push.after.as_deref(), Some(SHA_A));

    let delete = gitlab_push_body("push", "refs/heads/old", ZEROS, "null");
    let pairs = [("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)];
    let push = expect_push(run(&pairs, delete.as_bytes()), Provider::GitLab);
    assert!(push.deleted);
    assert_eq!(push.after, None);
}

#[test]
fn gitlab_token_checks() {
    let body = gitlab_push_body("push", "refs/heads/trunk", SHA_B, "null");
    for token in [
        "wrong",
        "s3cret-valu",
        "s3cret-value-and-more",
        "S3CRET-VALUE",
    ] {
        let pairs = [("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", token)];
        assert_eq!(
            run(&pairs, body.as_bytes()),
            Err((Provider::GitLab, Rejection::BadToken)),
            "{token:?}"
        );
    }
    for pairs in [
        &[("X-Gitlab-Event", "Push Hook")][..],
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "")][..],
    ] {
        assert_eq!(
            run(pairs, body.as_bytes()),
            Err((Provider::GitLab, Rejection::MissingSignature))
        );
    }
    // Rotation: the old token still works while both are configured.
    let pairs = [
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", OLD_SECRET),
    ];
    let result = verify_and_parse(
        &headers(&pairs),
        body.as_bytes(),
        &secrets(&[SECRET, OLD_SECRET]),
        false,
    );
    expect_push(result, Provider::GitLab);
    // A GitHub-style signature is not GitLab's credential.
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let pairs = [
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    assert_eq!(
        run(&pairs, body.as_bytes()),
        Err((Provider::GitLab, Rejection::BadSignature))
    );
}

#[test]
fn gitlab_system_hooks_and_other_events() {
    let body = gitlab_push_body("push", "refs/heads/trunk", SHA_B, "null");
    let pairs = [
        ("X-Gitlab-Event", "System Hook"),
        ("X-Gitlab-Token", SECRET),
    ];
    let push = expect_push(run(&pairs, body.as_bytes()), Provider::GitLab);
    assert_eq!(push.git_ref.as_deref(), Some("refs/heads/trunk"));

    let project_created =
        br#"{"event_name":"project_create","name":"x","path_with_namespace":"a/x"}"#;
    assert_eq!(
        run(&pairs, project_created),
        Ok((
            Provider::GitLab,
            Event::Other {
                event: "System Hook".into()
            }
        ))
    );
    let rejection = expect_rejection(run(&pairs, b"[1,2]"), Provider::GitLab);
    assert!(matches!(rejection, Rejection::Malformed(_)));

    let pairs = [
        ("X-Gitlab-Event", "Merge Request Hook"),
        ("X-Gitlab-Token", SECRET),
    ];
    assert_eq!(
        run(&pairs, b"{}"),
        Ok((
            Provider::GitLab,
            Event::Other {
                event: "Merge Request Hook".into()
            }
        ))
    );
}

// ------------------------------------------------------------- Bitbucket

fn bitbucket_cloud_body(changes: &str) -> String {
    format!(
        r#"{{
  "actor": {{"type": "user", "display_name": "Dev", "uuid": "{{9d7b7f2e-0000-4000-8000-000000000000}}"}},
  "repository": {{
    "type": "repository",
    "full_name": "acme/www",
    "name": "www",
    "scm": "git",
    "is_private": true,
    "links": {{
      "self": {{"href": "https://api.bitbucket.org/2.0/repositories/acme/www"}},
      "html": {{"href": "https://bitbucket.org/acme/www"}},
      "avatar": {{"href": "https://bytebucket.org/ravatar/x"}}
    }},
    "uuid": "{{5f1b1c1e-0000-4000-8000-000000000000}}"
  }},
  "push": {{"changes": [{changes}]}}
}}"#
    )
}

fn cloud_change(new: &str, old: &str) -> String {
    format!(
        r#"{{"new": {new}, "old": {old}, "created": false, "forced": false, "closed": false,
            "links": {{}}, "commits": [], "truncated": false}}"#
    )
}

fn cloud_state(kind: &str, name: &str, hash: &str) -> String {
    format!(
        r#"{{"type": "{kind}", "name": "{name}", "target": {{"type": "commit", "hash": "{hash}",
            "message": "msg\n", "date": "2024-05-01T10:00:00+00:00"}}, "links": {{}}}}"#
    )
}

#[test]
fn bitbucket_cloud_push_single_and_multi() {
    let body = bitbucket_cloud_body(&cloud_change(
        &cloud_state("branch", "main", SHA_B),
        &cloud_state("branch", "main", SHA_A),
    ));
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let pairs = [
        ("X-Event-Key", "repo:push"),
        ("X-Hook-UUID", "0a5b1c1e-0000-4000-8000-000000000000"),
        ("X-Request-UUID", "1a5b1c1e-0000-4000-8000-000000000000"),
        ("X-Hub-Signature", sig.as_str()),
    ];
    let push = expect_push(run(&pairs, body.as_bytes()), Provider::BitbucketCloud);
    assert_eq!(
        push,
        Push {
            git_ref: Some("refs/heads/main".into()),
            after: Some(SHA_B.into()),
            deleted: false,
            repo_urls: strings(&["https://bitbucket.org/acme/www"]),
            default_branch: None,
            other_refs: vec![],
        }
    );
    assert!(repo_matches(
        "git@bitbucket.org:acme/www.git",
        &push.repo_urls
    ));

    // A tag created, a branch deleted and a branch updated in one push.
    let changes = [
        cloud_change(&cloud_state("tag", "v3", SHA_A), "null"),
        cloud_change("null", &cloud_state("branch", "gone", SHA_A)),
        cloud_change(
            &cloud_state("branch", "release", SHA_B),
            &cloud_state("branch", "release", SHA_A),
        ),
    ]
    .join(",");
    let body = bitbucket_cloud_body(&changes);
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let pairs = [
        ("X-Event-Key", "repo:push"),
        ("X-Hub-Signature", sig.as_str()),
    ];
    let push = expect_push(run(&pairs, body.as_bytes()), Provider::BitbucketCloud);
    assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v3"));
    assert_eq!(push.after.as_deref(), Some(SHA_A));
    assert!(!push.deleted);
    assert_eq!(
        push.other_refs,
        vec![
            ("refs/heads/gone".to_string(), None),
            ("refs/heads/release".to_string(), Some(SHA_B.to_string())),
        ]
    );
    assert_eq!(ref_matches("release", &push), Ok(()));
    assert_eq!(push.after_for("release"), Some(SHA_B));
    assert_eq!(push.after_for("v3"), Some(SHA_A));
    assert_eq!(push.after_for("gone"), None);
    assert!(push.deleted_for("gone"));
    assert!(!push.deleted_for("release"));
    assert!(!push.deleted_for("v3"));
    assert!(!push.deleted_for("unrelated"));
    assert_eq!(ref_matches("refs/heads/gone", &push), Ok(()));
    let reason = ref_matches("main", &push).unwrap_err();
    assert!(
        reason.contains("refs/tags/v3, refs/heads/gone, refs/heads/release"),
        "{reason}"
    );
    // HEAD without a known default branch: any branch push.
    assert_eq!(ref_matches("HEAD", &push), Ok(()));
}

#[test]
fn bitbucket_cloud_signature_and_events() {
    let body = bitbucket_cloud_body(&cloud_change(&cloud_state("branch", "main", SHA_B), "null"));
    let wrong = format!("sha256={}", hmac256("x", body.as_bytes()));
    let pairs = [
        ("X-Event-Key", "repo:push"),
        ("X-Hub-Signature", wrong.as_str()),
    ];
    assert_eq!(
        run(&pairs, body.as_bytes()),
        Err((Provider::BitbucketCloud, Rejection::BadSignature))
    );
    let sha1 = [
        ("X-Event-Key", "repo:push"),
        (
            "X-Hub-Signature",
            "sha1=0123456789abcdef0123456789abcdef01234567",
        ),
    ];
    assert_eq!(
        run(&sha1, body.as_bytes()),
        Err((Provider::BitbucketCloud, Rejection::BadSignature))
    );
    assert_eq!(
        run(&[("X-Event-Key", "repo:push")], body.as_bytes()),
        Err((Provider::BitbucketCloud, Rejection::MissingSignature))
    );
    let sig = format!("sha256={}", hmac256(SECRET, b"{}"));
    let pairs = [
        ("X-Event-Key", "pullrequest:created"),
        ("X-Hub-Signature", sig.as_str()),
    ];
    assert_eq!(
        run(&pairs, b"{}"),
        Ok((
            Provider::BitbucketCloud,
            Event::Other {
                event: "pullrequest:created".into()
            }
        ))
    );
}

fn bitbucket_server_body(changes: &str) -> String {
    format!(
        r#"{{
  "eventKey": "repo:refs_changed",
  "date": "2024-05-01T10:00:00+0000",
  "actor": {{"name": "admin", "emailAddress": "admin@example.com", "id": 1, "slug": "admin", "type": "NORMAL"}},
  "repository": {{
    "slug": "portal",
    "id": 84,
    "name": "portal",
    "scmId": "git",
    "state": "AVAILABLE",
    "forkable": true,
    "project": {{"key": "WEB", "id": 84, "name": "Web", "public": false, "type": "NORMAL"}},
    "public": false,
    "links": {{
      "clone": [
        {{"href": "ssh://git@bitbucket.example.com:7999/web/portal.git", "name": "ssh"}},
        {{"href": "https://bitbucket.example.com/scm/web/portal.git", "name": "http"}}
      ],
      "self": [{{"href": "https://bitbucket.example.com/projects/WEB/repos/portal/browse"}}]
    }}
  }},
  "changes": [{changes}]
}}"#
    )
}

fn server_change(git_ref: &str, kind: &str, from: &str, to: &str) -> String {
    let display = git_ref.rsplit('/').next().unwrap();
    let ref_type = if git_ref.starts_with("refs/tags/") {
        "TAG"
    } else {
        "BRANCH"
    };
    format!(
        r#"{{"ref": {{"id": "{git_ref}", "displayId": "{display}", "type": "{ref_type}"}},
            "refId": "{git_ref}", "fromHash": "{from}", "toHash": "{to}", "type": "{kind}"}}"#
    )
}

#[test]
fn bitbucket_server_push_ping_and_deletion() {
    let changes = [
        server_change("refs/heads/master", "UPDATE", SHA_A, SHA_B),
        server_change("refs/tags/r1", "ADD", ZEROS, SHA_A),
        server_change("refs/heads/tmp", "DELETE", SHA_A, ZEROS),
    ]
    .join(",");
    let body = bitbucket_server_body(&changes);
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let pairs = [
        ("X-Event-Key", "repo:refs_changed"),
        ("X-Request-Id", "ad3bb1a0-0000-4000-8000-000000000000"),
        ("X-Hub-Signature", sig.as_str()),
    ];
    let push = expect_push(run(&pairs, body.as_bytes()), Provider::BitbucketServer);
    assert_eq!(
        push,
        Push {
            git_ref: Some("refs/heads/master".into()),
            after: Some(SHA_B.into()),
            deleted: false,
            repo_urls: strings(&[
                "ssh://git@bitbucket.example.com:7999/web/portal.git",
                "https://bitbucket.example.com/scm/web/portal.git",
                "https://bitbucket.example.com/projects/WEB/repos/portal/browse",
            ]),
            default_branch: None,
            other_refs: vec![
                ("refs/tags/r1".into(), Some(SHA_A.into())),
                ("refs/heads/tmp".into(), None),
            ],
        }
    );
    assert!(repo_matches(
        "https://bitbucket.example.com/scm/WEB/portal",
        &push.repo_urls
    ));
    assert!(repo_matches(
        "ssh://git@bitbucket.example.com:7999/web/portal",
        &push.repo_urls
    ));
    assert!(!repo_matches(
        "git@bitbucket.example.com:web/portal.git",
        &push.repo_urls
    ));

    // Only a deletion.
    let body = bitbucket_server_body(&server_change("refs/heads/tmp", "DELETE", SHA_A, ZEROS));
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let pairs = [
        ("X-Event-Key", "repo:refs_changed"),
        ("X-Hub-Signature", sig.as_str()),
    ];
    let push = expect_push(run(&pairs, body.as_bytes()), Provider::BitbucketServer);
    assert!(push.deleted);
    assert_eq!(push.after, None);
    assert!(push.deleted_for("tmp"));
    assert!(push.deleted_for("HEAD"));

    let ping = br#"{"test": true}"#;
    let sig = format!("sha256={}", hmac256(SECRET, ping));
    let pairs = [
        ("X-Event-Key", "diagnostics:ping"),
        ("X-Hub-Signature", sig.as_str()),
    ];
    assert_eq!(
        run(&pairs, ping),
        Ok((Provider::BitbucketServer, Event::Ping))
    );
    let pairs = [
        ("X-Event-Key", "pr:opened"),
        ("X-Hub-Signature", sig.as_str()),
    ];
    assert_eq!(
        run(&pairs, ping),
        Ok((
            Provider::BitbucketServer,
            Event::Other {
                event: "pr:opened".into()
            }
        ))
    );
    let wrong = format!("sha256={}", hmac256("x", ping));
    let pairs = [
        ("X-Event-Key", "diagnostics:ping"),
        ("X-Hub-Signature", wrong.as_str()),
    ];
    assert_eq!(
        run(&pairs, ping),
        Err((Provider::BitbucketServer, Rejection::BadSignature))
    );
    // Rotation.
    let old = format!("sha256={}", hmac256(OLD_SECRET, ping));
    let pairs = [
        ("X-Event-Key", "diagnostics:ping"),
        ("X-Hub-Signature", old.as_str()),
    ];
    let result = verify_and_parse(
        &headers(&pairs),
        ping,
        &secrets(&[SECRET, OLD_SECRET]),
        false,
    );
    assert_eq!(result, Ok((Provider::BitbucketServer, Event::Ping)));
}

// --------------------------------------------------------------- Generic

#[test]
fn generic_requests() {
    let body = format!(r#"{{"ref": "refs/heads/main", "after": "{SHA_A}"}}"#);
    let s256 = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let s512 = format!("sha512={}", hmac512(SECRET, body.as_bytes()));
    for sig in [&s256, &s512] {
        let push = expect_push(
            run(&[("X-Signature", sig)], body.as_bytes()),
            Provider::Generic,
        );
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(push.after.as_deref(), Some(SHA_A));
    }
    // A sha512 digest announced as sha256 (and vice versa) fails.
    let swapped = s512.replace("sha512=", "sha256=");
    assert_eq!(
        run(&[("X-Signature", &swapped)], body.as_bytes()),
        Err((Provider::Generic, Rejection::BadSignature))
    );
    let swapped = s256.replace("sha256=", "sha512=");
    assert_eq!(
        run(&[("X-Signature", &swapped)], body.as_bytes()),
        Err((Provider::Generic, Rejection::BadSignature))
    );

    // Empty body and `{}` mean "sync now".
    for empty in [&b""[..], b"{}", b"  \n"] {
        let sig = format!("sha256={}", hmac256(SECRET, empty));
        let push = expect_push(run(&[("X-Signature", &sig)], empty), Provider::Generic);
        assert_eq!(push, Push::default());
        assert_eq!(ref_matches("main", &push), Ok(()));
        assert_eq!(ref_matches(SHA_A, &push), Ok(()));
    }
    assert_eq!(
        run(&[], b""),
        Err((Provider::Generic, Rejection::MissingSignature))
    );
    let unsigned = verify_and_parse(&HeaderMap::new(), b"", &secrets(&[SECRET]), true);
    assert_eq!(
        unsigned,
        Ok((Provider::Generic, Event::Push(Push::default())))
    );

    // Other credential forms without an event header.
    let push = expect_push(
        run(&[("X-Gitlab-Token", SECRET)], body.as_bytes()),
        Provider::Generic,
    );
    assert_eq!(push.git_ref.as_deref(), Some("refs/heads/main"));
    expect_push(
        run(&[("X-Hub-Signature-256", &s256)], body.as_bytes()),
        Provider::Generic,
    );
    assert_eq!(
        run(&[("X-Signature", "md5=abcdef")], body.as_bytes()),
        Err((Provider::Generic, Rejection::BadSignature))
    );

    // A short ref name is ambiguous (branch or tag?) and refused.
    let short = br#"{"ref": "main"}"#;
    let sig = format!("sha256={}", hmac256(SECRET, short));
    let rejection = expect_rejection(run(&[("X-Signature", &sig)], short), Provider::Generic);
    assert!(matches!(rejection, Rejection::Malformed(_)));
}

// ------------------------------------------------------ malformed bodies

fn deep(depth: usize, open: &str, close: &str) -> Vec<u8> {
    let mut body = String::from(r#"{"ref":"refs/heads/main","x":"#);
    body.push_str(&open.repeat(depth));
    body.push_str(&close.repeat(depth));
    body.push('}');
    body.into_bytes()
}

#[test]
fn malformed_push_bodies() {
    let mut bodies: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated",
            br#"{"ref": "refs/heads/main", "after": "4b82"#.to_vec(),
        ),
        ("not json", b"payload=%7B%22ref%22%3A%22x%22%7D".to_vec()),
        ("empty", b"".to_vec()),
        ("array", b"[]".to_vec()),
        ("number", b"42".to_vec()),
        ("string", br#""refs/heads/main""#.to_vec()),
        ("null", b"null".to_vec()),
        ("no ref", b"{}".to_vec()),
        ("ref number", br#"{"ref": 5}"#.to_vec()),
        ("ref object", br#"{"ref": {"name": "main"}}"#.to_vec()),
        ("short ref", br#"{"ref": "main"}"#.to_vec()),
        ("ref control", br#"{"ref": "refs/heads/a\u0000b"}"#.to_vec()),
        ("ref space", br#"{"ref": "refs/heads/a b"}"#.to_vec()),
        ("bare refs/", br#"{"ref": "refs/"}"#.to_vec()),
        (
            "after short",
            br#"{"ref": "refs/heads/main", "after": "abc123"}"#.to_vec(),
        ),
        (
            "after number",
            br#"{"ref": "refs/heads/main", "after": 12345}"#.to_vec(),
        ),
        (
            "after not hex",
            br#"{"ref": "refs/heads/main", "after": "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"}"#
                .to_vec(),
        ),
        (
            "deleted string",
            br#"{"ref": "refs/heads/main", "deleted": "yes"}"#.to_vec(),
        ),
        ("non-utf8", b"{\"ref\": \"refs/heads/\xff\xfe\"}".to_vec()),
        ("utf16 bom", b"\xff\xfe{\x00}\x00".to_vec()),
        ("trailing", br#"{"ref": "refs/heads/main"} {}"#.to_vec()),
        (
            "huge ref",
            format!(r#"{{"ref": "refs/heads/{}"}}"#, "a".repeat(5000)).into_bytes(),
        ),
        ("deep arrays", deep(100_000, "[", "]")),
        ("deep objects", deep(50_000, r#"{"a":"#, "}")),
        ("deep unclosed", "[".repeat(1_000_000).into_bytes()),
    ];
    bodies.push(("deep ref", {
        let mut b = b"{\"ref\":".to_vec();
        b.extend(std::iter::repeat_n(b'[', 200));
        b
    }));
    for (name, body) in &bodies {
        let sig = format!("sha256={}", hmac256(SECRET, body));
        let result = run(&github_headers("push", &sig), body);
        let rejection = expect_rejection(result, Provider::GitHub);
        assert!(
            matches!(rejection, Rejection::Malformed(_)),
            "{name}: {rejection:?}"
        );
        assert_eq!(rejection.metric_label(), "malformed");
    }
    // An out-of-range float is a parse error (it would be accepted under
    // serde_json's `arbitrary_precision`); either way no panic.
    let huge = br#"{"ref": "refs/heads/main", "n": -1e999999}"#;
    let sig = format!("sha256={}", hmac256(SECRET, huge));
    match run(&github_headers("push", &sig), huge) {
        Ok((_, Event::Push(_))) | Err((_, Rejection::Malformed(_))) => {}
        other => panic!("{other:?}"),
    }
    // Brackets inside strings (and an escaped quote) do not count as nesting.
    let brackets = format!(
        r#"{{"ref": "refs/heads/main", "message": "{}\" {}"}}"#,
        "[{".repeat(500),
        "]".repeat(10)
    );
    let sig = format!("sha256={}", hmac256(SECRET, brackets.as_bytes()));
    expect_push(
        run(&github_headers("push", &sig), brackets.as_bytes()),
        Provider::GitHub,
    );
    // Big integers are just numbers; an unused one does not matter.
    let big = br#"{"ref": "refs/heads/main", "n": 123456789012345678901234567890123456789}"#;
    let sig = format!("sha256={}", hmac256(SECRET, big));
    expect_push(run(&github_headers("push", &sig), big), Provider::GitHub);
    // A nesting depth serde_json accepts is fine.
    let ok_deep = deep(100, "[", "]");
    let sig = format!("sha256={}", hmac256(SECRET, &ok_deep));
    expect_push(
        run(&github_headers("push", &sig), &ok_deep),
        Provider::GitHub,
    );
}

#[test]
fn malformed_bitbucket_and_gitlab_bodies() {
    let cloud: &[&[u8]] = &[
        b"{}",
        br#"{"push": []}"#,
        br#"{"push": {}}"#,
        br#"{"push": {"changes": {}}}"#,
        br#"{"push": {"changes": []}}"#,
        br#"{"push": {"changes": [1]}}"#,
        br#"{"push": {"changes": [{}]}}"#,
        br#"{"push": {"changes": [{"new": "main"}]}}"#,
        br#"{"push": {"changes": [{"new": {"name": "main"}}]}}"#,
        br#"{"push": {"changes": [{"new": {"type": "branch"}}]}}"#,
        br#"{"push": {"changes": [{"new": {"type": "branch", "name": 7}}]}}"#,
        br#"{"push": {"changes": [{"new": {"type": "branch", "name": "a b"}}]}}"#,
        br#"{"push": {"changes": [{"new": {"type": "branch", "name": "m", "target": {"hash": "xyz"}}}]}}"#,
        br#"{"push": {"changes": [{"new": {"type": "bookmark", "name": "m"}}]}}"#,
    ];
    for body in cloud {
        let sig = format!("sha256={}", hmac256(SECRET, body));
        let pairs = [
            ("X-Event-Key", "repo:push"),
            ("X-Hub-Signature", sig.as_str()),
        ];
        let rejection = expect_rejection(run(&pairs, body), Provider::BitbucketCloud);
        assert!(
            matches!(rejection, Rejection::Malformed(_)),
            "{}: {rejection:?}",
            String::from_utf8_lossy(body)
        );
    }
    let server: &[&[u8]] = &[
        b"{}",
        br#"{"changes": {}}"#,
        br#"{"changes": []}"#,
        br#"{"changes": [null]}"#,
        br#"{"changes": [{"type": "UPDATE"}]}"#,
        br#"{"changes": [{"ref": {"id": 3}}]}"#,
        br#"{"changes": [{"refId": "master"}]}"#,
        br#"{"changes": [{"refId": "refs/heads/master", "toHash": 1}]}"#,
        br#"{"changes": [{"refId": "refs/heads/master", "type": []}]}"#,
    ];
    for body in server {
        let sig = format!("sha256={}", hmac256(SECRET, body));
        let pairs = [
            ("X-Event-Key", "repo:refs_changed"),
            ("X-Hub-Signature", sig.as_str()),
        ];
        let rejection = expect_rejection(run(&pairs, body), Provider::BitbucketServer);
        assert!(
            matches!(rejection, Rejection::Malformed(_)),
            "{}: {rejection:?}",
            String::from_utf8_lossy(body)
        );
    }
    let gitlab: &[&[u8]] = &[
        b"{}",
        b"[]",
        br#"{"ref": null}"#,
        br#"{"ref": "refs/heads/x", "after": null, "checkout_sha": 4}"#,
    ];
    for body in gitlab {
        let pairs = [("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)];
        let rejection = expect_rejection(run(&pairs, body), Provider::GitLab);
        assert!(
            matches!(rejection, Rejection::Malformed(_)),
            "{rejection:?}"
        );
    }
}

#[test]
fn lenient_repository_metadata() {
    let body = format!(
        r#"{{"ref":"refs/heads/main","after":"{SHA_A}","repository":{{"clone_url":7,"ssh_url":null,
            "html_url":"https://example.com/a/b","default_branch":["x"]}}}}"#
    );
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let push = expect_push(
        run(&github_headers("push", &sig), body.as_bytes()),
        Provider::GitHub,
    );
    assert_eq!(push.repo_urls, strings(&["https://example.com/a/b"]));
    assert_eq!(push.default_branch, None);

    let body = format!(r#"{{"ref":"refs/heads/main","after":"{SHA_A}","repository":"o/r"}}"#);
    let sig = format!("sha256={}", hmac256(SECRET, body.as_bytes()));
    let push = expect_push(
        run(&github_headers("push", &sig), body.as_bytes()),
        Provider::GitHub,
    );
    assert!(push.repo_urls.is_empty());
}

// ------------------------------------------------------------ ref_matches

fn push_to(git_ref: &str, default_branch: Option<&str>) -> Push {
    Push {
        git_ref: Some(git_ref.into()),
        after: Some(SHA_A.into()),
        default_branch: default_branch.map(Into::into),
        ..Push::default()
    }
}

#[test]
fn ref_matches_table() {
    let table: &[(&str, &str, Option<&str>, bool)] = &[
        // configured, pushed, default branch, matches
        ("HEAD", "refs/heads/main", Some("main"), true),
        ("HEAD", "refs/heads/dev", Some("main"), false),
        ("HEAD", "refs/tags/main", Some("main"), false),
        ("HEAD", "refs/heads/anything", None, true),
        ("HEAD", "refs/tags/v1", None, false),
        ("", "refs/heads/main", Some("main"), true),
        ("main", "refs/heads/main", Some("main"), true),
        ("main", "refs/tags/main", None, true),
        ("main", "refs/heads/mainline", None, false),
        ("main", "refs/heads/feature/main", None, false),
        ("feature/x", "refs/heads/feature/x", None, true),
        ("v1.0", "refs/tags/v1.0", None, true),
        ("v1.0", "refs/heads/v1.0", None, true),
        ("heads/main", "refs/heads/main", None, true),
        ("tags/v1", "refs/tags/v1", None, true),
        ("tags/v1", "refs/heads/v1", None, false),
        ("refs/heads/main", "refs/heads/main", None, true),
        ("refs/heads/main", "refs/tags/main", None, false),
        ("refs/tags/v1", "refs/tags/v1", None, true),
        ("refs/heads/Main", "refs/heads/main", None, false),
        (SHA_A, "refs/heads/main", Some("main"), false),
        (
            "D670460B4B4AECE5915CAF5C68D12F560A9FE3E4",
            "refs/heads/main",
            None,
            false,
        ),
        // 39 hex digits is a name, not a commit.
        (
            "4b825dc642cb6eb9a060e54bf8d69288fbee490",
            "refs/heads/4b825dc642cb6eb9a060e54bf8d69288fbee490",
            None,
            true,
        ),
    ];
    for (configured, pushed, default, want) in table {
        let push = push_to(pushed, *default);
        let got = ref_matches(configured, &push);
        assert_eq!(
            got.is_ok(),
            *want,
            "{configured} vs {pushed} ({default:?}): {got:?}"
        );
        if let Err(reason) = got {
            assert!(reason.contains(pushed), "{reason}");
        }
    }
    let reason = ref_matches(SHA_A, &push_to("refs/heads/main", None)).unwrap_err();
    assert!(reason.contains("pinned"), "{reason}");
    let reason = ref_matches("HEAD", &push_to("refs/heads/dev", Some("main"))).unwrap_err();
    assert!(reason.contains("refs/heads/main"), "{reason}");
}

#[test]
fn ref_matches_reason_is_bounded() {
    let push = Push {
        git_ref: Some("refs/heads/a".into()),
        other_refs: (0..1000)
            .map(|i| (format!("refs/heads/b{i}"), None))
            .collect(),
        ..Push::default()
    };
    let reason = ref_matches("refs/heads/zzz", &push).unwrap_err();
    assert!(reason.contains("and 998 more"), "{reason}");
    assert!(reason.len() < 200, "{reason}");
    assert_eq!(ref_matches("b999", &push), Ok(()));
}

// ----------------------------------------------------------- repo_matches

#[test]
fn repo_matches_table() {
    let table: &[(&str, &str, bool)] = &[
        ("https://github.com/o/r", "https://github.com/o/r.git", true),
        ("https://github.com/o/r", "git@github.com:o/r.git", true),
        (
            "https://github.com/o/r",
            "ssh://git@github.com/o/r.git",
            true,
        ),
        (
            "https://github.com/o/r",
            "ssh://git@github.com:22/o/r.git",
            true,
        ),
        ("https://github.com/o/r", "git://github.com/o/r.git", true),
        ("https://github.com/o/r", "http://github.com/o/r/", true),
        ("https://github.com/o/r", "https://github.com:443/o/r", true),
        (
            "https://github.com/o/r",
            "https://user:token@GitHub.COM/o/r.git",
            true,
        ),
        ("https://github.com/o/r", "https://github.com/O/R", true),
        ("https://github.com/o/r", "github.com/o/r", true),
        (
            "https://github.com/o/r",
            "https://github.com//o//r.git/",
            true,
        ),
        (
            "https://github.com/o/r",
            "https://github.com/o/r?tab=readme#top",
            true,
        ),
        (
            "https://github.com/o/r",
            "git+ssh://git@github.com/o/r",
            true,
        ),
        ("git@github.com:o/r.git", "https://github.com/o/r", true),
        ("https://github.com/o/r", "https://github.com/o/r2", false),
        (
            "https://github.com/o/r",
            "https://github.com/o/r/sub",
            false,
        ),
        (
            "https://github.com/o/r",
            "https://github.com/other/r",
            false,
        ),
        ("https://github.com/o/r", "https://gitlab.com/o/r", false),
        (
            "https://github.com/o/r",
            "https://github.com.evil.com/o/r",
            false,
        ),
        (
            "https://github.com/o/r",
            "https://github.com:8443/o/r",
            false,
        ),
        ("https://host:8443/o/r", "https://host:8443/o/r.git", true),
        ("https://host:8443/o/r", "http://host:8443/o/r", true),
        ("https://host/o/r", "ssh://git@host:7999/o/r.git", false),
        ("https://[::1]/o/r", "ssh://git@[::1]/o/r.git", true),
        ("https://[::1]:8080/o/r", "http://[::1]:8080/o/r", true),
        (
            "https://github.com/o/r",
            "file:///srv/github.com/o/r",
            false,
        ),
        ("https://github.com/o/r", "", false),
        ("https://github.com/o/r", "https://github.com/", false),
        (
            "https://github.com/o/r",
            "https://github.com:notaport/o/r",
            false,
        ),
        ("https://github.com/", "https://github.com/", false),
        ("", "", false),
        (
            "https://gitlab.com/group/sub/proj",
            "git@gitlab.com:group/sub/proj.git",
            true,
        ),
        (
            "https://gitlab.com/group/sub/proj",
            "git@gitlab.com:group/proj.git",
            false,
        ),
    ];
    for (filter, url, want) in table {
        assert_eq!(
            repo_matches(filter, &[url.to_string()]),
            *want,
            "{filter} vs {url}"
        );
    }
    assert!(!repo_matches("https://github.com/o/r", &[]));
    assert!(repo_matches(
        "https://github.com/o/r",
        &strings(&["https://other/x", "git@github.com:o/r.git"])
    ));
}

#[test]
fn labels_and_names() {
    let providers = [
        (Provider::GitHub, "github"),
        (Provider::GitLab, "gitlab"),
        (Provider::Gitea, "gitea"),
        (Provider::Forgejo, "forgejo"),
        (Provider::BitbucketCloud, "bitbucket-cloud"),
        (Provider::BitbucketServer, "bitbucket-server"),
        (Provider::Generic, "generic"),
    ];
    for (provider, name) in providers {
        assert_eq!(provider.as_str(), name);
        assert_eq!(provider.to_string(), name);
    }
    assert_eq!(
        Rejection::MissingSignature.metric_label(),
        "missing_signature"
    );
    assert_eq!(Rejection::BadSignature.metric_label(), "bad_signature");
    assert_eq!(Rejection::Malformed("x".into()).metric_label(), "malformed");
    let s = Secrets::new(vec![b"a".to_vec(), Vec::new(), b"b".to_vec()]);
    assert_eq!(s.len(), 2);
    assert!(!s.is_empty());
    assert!(Secrets::new(vec![Vec::new()]).is_empty());
    assert_eq!(format!("{s:?}"), "Secrets { count: 2 }");
}

// -------------------------------------------------------------- proptest

/// Cases per property; the total is stated in the module's report.
const FUZZ_HEADERS_CASES: u32 = 15_000;
const FUZZ_SIGNED_CASES: u32 = 10_000;
const FUZZ_JSON_CASES: u32 = 10_000;
const FUZZ_MATCH_CASES: u32 = 5_000;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        // Never write regression files into src/.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

const HEADER_NAMES: &[&str] = &[
    "x-github-event",
    "x-gitea-event",
    "x-forgejo-event",
    "x-gitlab-event",
    "x-event-key",
    "x-hub-signature-256",
    "x-hub-signature",
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gogs-signature",
    "x-gitlab-token",
    "x-signature",
    "content-type",
];

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"push".to_vec()),
        Just(b"ping".to_vec()),
        Just(b"Push Hook".to_vec()),
        Just(b"System Hook".to_vec()),
        Just(b"repo:push".to_vec()),
        Just(b"repo:refs_changed".to_vec()),
        Just(b"diagnostics:ping".to_vec()),
        Just(b"sha256=".to_vec()),
        Just(b"sha1=abcd".to_vec()),
        "sha(256|512)=[0-9a-fA-F]{0,130}".prop_map(String::into_bytes),
        "[0-9a-f]{64}".prop_map(String::into_bytes),
        // Any bytes a header value may hold (no CR, LF or NUL).
        proptest::collection::vec(
            any::<u8>().prop_filter("header byte", |b| !matches!(b, 0 | b'\r' | b'\n')),
            0..80
        ),
    ]
}

fn arbitrary_headers() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((0..HEADER_NAMES.len(), header_value()), 0..6).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (index, value) in pairs {
            if let (Some(name), Ok(value)) =
                (HEADER_NAMES.get(index), HeaderValue::from_bytes(&value))
            {
                map.append(*name, value);
            }
        }
        map
    })
}

/// How a correctly signed request is presented, per provider.
#[derive(Debug, Clone, Copy)]
enum Sender {
    GitHub,
    Gitea,
    Forgejo,
    GitLab,
    BitbucketCloud,
    BitbucketServer,
    Generic256,
    Generic512,
}

const SENDERS: &[Sender] = &[
    Sender::GitHub,
    Sender::Gitea,
    Sender::Forgejo,
    Sender::GitLab,
    Sender::BitbucketCloud,
    Sender::BitbucketServer,
    Sender::Generic256,
    Sender::Generic512,
];

/// Correctly signed headers for `body` under `secret`, announcing a push
/// (`push_event`) or some event of the sender's vocabulary.
fn signed(sender: Sender, secret: &str, body: &[u8], push_event: bool) -> (HeaderMap, Provider) {
    let s256 = hmac256(secret, body);
    let prefixed = format!("sha256={s256}");
    let pick = |push: &'static str, other: &'static str| if push_event { push } else { other };
    let (pairs, provider): (Vec<(&str, String)>, Provider) = match sender {
        Sender::GitHub => (
            vec![
                ("X-GitHub-Event", pick("push", "ping").into()),
                ("X-Hub-Signature-256", prefixed),
            ],
            Provider::GitHub,
        ),
        Sender::Gitea => (
            vec![
                ("X-Gitea-Event", pick("push", "issues").into()),
                ("X-Gitea-Signature", s256),
            ],
            Provider::Gitea,
        ),
        Sender::Forgejo => (
            vec![
                ("X-Forgejo-Event", pick("push", "release").into()),
                ("X-Gitea-Event", "push".into()),
                ("X-Forgejo-Signature", s256),
            ],
            Provider::Forgejo,
        ),
        Sender::GitLab => (
            vec![
                ("X-Gitlab-Event", pick("Push Hook", "System Hook").into()),
                ("X-Gitlab-Token", secret.into()),
            ],
            Provider::GitLab,
        ),
        Sender::BitbucketCloud => (
            vec![
                ("X-Event-Key", pick("repo:push", "issue:created").into()),
                ("X-Hub-Signature", prefixed),
            ],
            Provider::BitbucketCloud,
        ),
        Sender::BitbucketServer => (
            vec![
                (
                    "X-Event-Key",
                    pick("repo:refs_changed", "diagnostics:ping").into(),
                ),
                ("X-Hub-Signature", prefixed),
            ],
            Provider::BitbucketServer,
        ),
        Sender::Generic256 => (vec![("X-Signature", prefixed)], Provider::Generic),
        Sender::Generic512 => (
            vec![("X-Signature", format!("sha512={}", hmac512(secret, body)))],
            Provider::Generic,
        ),
    };
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(&value).unwrap(),
        );
    }
    (map, provider)
}

const KEYS: &[&str] = &[
    "ref",
    "after",
    "deleted",
    "repository",
    "project",
    "push",
    "changes",
    "new",
    "old",
    "type",
    "name",
    "target",
    "hash",
    "toHash",
    "refId",
    "id",
    "links",
    "clone",
    "html",
    "href",
    "self",
    "clone_url",
    "default_branch",
    "object_kind",
    "event_name",
    "checkout_sha",
    "closed",
    "mainbranch",
    "secret",
];

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("refs/heads/main".to_string()),
            Just("refs/tags/v1".to_string()),
            Just("main".to_string()),
            Just(SHA_A.to_string()),
            Just(SHA_A.to_uppercase()),
            Just(ZEROS.to_string()),
            Just("branch".to_string()),
            Just("tag".to_string()),
            Just("DELETE".to_string()),
            Just("push".to_string()),
            Just("https://github.com/o/r.git".to_string()),
            Just("git@host:o/r.git".to_string()),
            any::<String>(),
        ]
        .prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    json_leaf().prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..8).prop_map(
                |entries| {
                    serde_json::Value::Object(
                        entries
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect(),
                    )
                }
            ),
        ]
    })
}

fn check_push_invariants(push: &Push) {
    if let Some(after) = &push.after {
        assert_eq!(after.len(), 40);
        assert!(after
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert!(!push.deleted);
    }
    if let Some(git_ref) = &push.git_ref {
        assert!(git_ref.starts_with("refs/"));
    }
    for (git_ref, after) in &push.other_refs {
        assert!(git_ref.starts_with("refs/"));
        assert!(after.as_ref().is_none_or(|a| a.len() == 40));
    }
    for configured in ["HEAD", "main", "refs/heads/main", SHA_A] {
        let _ = ref_matches(configured, push);
        let _ = push.after_for(configured);
        let _ = push.deleted_for(configured);
    }
    let _ = repo_matches("https://github.com/o/r", &push.repo_urls);
}

proptest! {
    #![proptest_config(config(FUZZ_HEADERS_CASES))]

    /// Arbitrary headers from the recognised set with arbitrary bytes: no
    /// panic, and nothing unsigned gets through unless allowed (no random
    /// value equals the secret or its HMAC).
    #[test]
    fn fuzz_arbitrary_headers_and_bytes(
        map in arbitrary_headers(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        allow_unsigned in any::<bool>(),
        configured in prop_oneof![Just(Vec::new()), Just(vec![SECRET.as_bytes().to_vec()])],
    ) {
        let result = verify_and_parse(&map, &body, &Secrets::new(configured), allow_unsigned);
        prop_assert!(result.is_err() || allow_unsigned, "{:?}", result);
        if let Ok((_, Event::Push(push))) = &result {
            check_push_invariants(push);
        }
    }
}

proptest! {
    #![proptest_config(config(FUZZ_SIGNED_CASES))]

    /// Correctly signed arbitrary bytes (either of two rotated secrets) are
    /// never a signature rejection, whatever the provider and event.
    #[test]
    fn fuzz_signed_bytes_always_verify(
        sender in proptest::sample::select(SENDERS),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        use_old in any::<bool>(),
        push_event in any::<bool>(),
    ) {
        let secret = if use_old { OLD_SECRET } else { SECRET };
        let (map, provider) = signed(sender, secret, &body, push_event);
        match verify_and_parse(&map, &body, &secrets(&[SECRET, OLD_SECRET]), false) {
            Ok((p, event)) => {
                prop_assert_eq!(p, provider);
                if let Event::Push(push) = &event {
                    check_push_invariants(push);
                }
            }
            Err((p, rejection)) => {
                prop_assert_eq!(p, provider);
                prop_assert!(matches!(rejection, Rejection::Malformed(_)), "{:?}", rejection);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(FUZZ_JSON_CASES))]

    /// JSON-ish bodies built from the fields the parsers look at, signed
    /// correctly and sent as push events: a push with sane fields or a
    /// Malformed rejection, never a panic.
    #[test]
    fn fuzz_signed_json_push_bodies(
        sender in proptest::sample::select(SENDERS),
        value in json_value(),
    ) {
        let body = serde_json::to_vec(&value).unwrap();
        let (map, provider) = signed(sender, SECRET, &body, true);
        match verify_and_parse(&map, &body, &secrets(&[SECRET]), false) {
            Ok((p, Event::Push(push))) => {
                prop_assert_eq!(p, provider);
                check_push_invariants(&push);
                if provider != Provider::Generic {
                    prop_assert!(push.git_ref.is_some());
                }
            }
            Ok(other) => prop_assert!(false, "push event parsed as {:?}", other),
            Err((p, rejection)) => {
                prop_assert_eq!(p, provider);
                prop_assert!(matches!(rejection, Rejection::Malformed(_)), "{:?}", rejection);
            }
        }
    }
}

fn url_variants() -> impl Strategy<Value = (String, String)> {
    let host = "[a-z][a-z0-9-]{0,10}(\\.[a-z]{2,5}){0,2}";
    let path = "[A-Za-z0-9_.-]{1,10}(/[A-Za-z0-9_-]{1,10}){0,3}";
    (host, path, 0..8usize, 0..8usize).prop_map(|(host, path, a, b)| {
        let path = path
            .trim_end_matches('.')
            .trim_end_matches(".git")
            .to_string();
        let path = if path.is_empty() || path.starts_with('.') {
            format!("p{path}")
        } else {
            path
        };
        let render = |form: usize| match form {
            0 => format!("https://{host}/{path}"),
            1 => format!("https://{host}/{path}.git"),
            2 => format!("git@{host}:{path}.git"),
            3 => format!("ssh://git@{host}/{path}.git"),
            4 => format!("http://{}:80/{path}/", host.to_uppercase()),
            5 => format!("git://{host}/{}", path.to_uppercase()),
            6 => format!("https://user:pw@{host}:443/{path}"),
            _ => format!("{host}/{path}"),
        };
        (render(a), render(b))
    })
}

proptest! {
    #![proptest_config(config(FUZZ_MATCH_CASES))]

    /// The matchers never panic on arbitrary strings.
    #[test]
    fn fuzz_matchers_never_panic(
        filter in any::<String>(),
        url in any::<String>(),
        configured in any::<String>(),
        git_ref in any::<String>(),
        default_branch in proptest::option::of(any::<String>()),
    ) {
        let _ = repo_matches(&filter, std::slice::from_ref(&url));
        let _ = repo_matches(&url, &[filter]);
        let push = Push {
            git_ref: Some(git_ref.clone()),
            default_branch,
            other_refs: vec![(url, None)],
            ..Push::default()
        };
        let _ = ref_matches(&configured, &push);
        let _ = push.after_for(&configured);
        // A full ref always matches itself.
        prop_assert_eq!(ref_matches(&format!("refs/{git_ref}"), &Push {
            git_ref: Some(format!("refs/{git_ref}")),
            ..Push::default()
        }), Ok(()));
    }

    /// Every spelling of the same repository matches every other.
    #[test]
    fn fuzz_repo_spellings_match((a, b) in url_variants()) {
        prop_assert!(repo_matches(&a, std::slice::from_ref(&b)), "{} vs {}", a, b);
        prop_assert!(repo_matches(&b, std::slice::from_ref(&a)), "{} vs {}", b, a);
    }
}
