//! Malformed bodies, and the ref and repository filters.

use super::*;

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
