//! GitHub, Gitea and Forgejo deliveries.

use super::*;

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
