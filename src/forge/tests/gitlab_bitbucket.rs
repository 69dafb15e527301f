//! GitLab, Bitbucket (Cloud and Server) and generic deliveries.

use super::*;

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

/// Standard Webhooks: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
fn standard_signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap();
    Mac::update(&mut mac, format!("{id}.{timestamp}.").as_bytes());
    Mac::update(&mut mac, body);
    let tag = mac.finalize().into_bytes();
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

/// Headers then body, with the clock at `now`.
fn run_at(
    pairs: &[(&str, &str)],
    body: &[u8],
    list: &[&str],
    now: u64,
) -> Result<(Provider, Event), (Provider, Rejection)> {
    let (headers, secrets) = (headers(pairs), secrets(list));
    let admitted = authenticate_headers_at(&headers, &secrets, false, now)?;
    verify_body(admitted, &headers, body, &secrets)
}

#[test]
fn standard_webhooks_matches_the_specifications_example() {
    // The example of the Standard Webhooks specification (and of its
    // libraries' tests); the signature checked with Python's hmac too.
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let pairs = [
        ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
        ("webhook-timestamp", "1614265330"),
        (
            "webhook-signature",
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
    ];
    assert_eq!(
        run_at(&pairs, body, &[secret], 1614265330 + 10),
        Ok((Provider::Generic, Event::Push(Push::default())))
    );
    assert_eq!(
        run_at(&pairs, body, &[secret], 1614265330 + 301),
        Err((Provider::Generic, Rejection::StaleTimestamp(301)))
    );
    assert_eq!(
        run_at(&pairs, body, &[secret], 1614265330 - 400),
        Err((Provider::Generic, Rejection::StaleTimestamp(-400)))
    );
    // Svix sends the same headers under its own names by default.
    let svix = [
        ("svix-id", pairs[0].1),
        ("svix-timestamp", pairs[1].1),
        ("svix-signature", pairs[2].1),
    ];
    assert_eq!(
        run_at(&svix, body, &[secret], 1614265330),
        Ok((Provider::Generic, Event::Push(Push::default())))
    );
    let other = [("webhook-id", "msg_other"), pairs[1], pairs[2]];
    assert_eq!(
        run_at(&other, body, &[secret], 1614265330),
        Err((Provider::Generic, Rejection::BadSignature)),
        "the id is signed"
    );
}

/// Which way a stale timestamp is off, in words; milliseconds named.
#[test]
fn stale_timestamps_say_which_way_and_milliseconds_are_named() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let sent = 1614265330;
    let at = |timestamp: String, now: u64| {
        let pairs = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", timestamp.as_str()),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        match run_at(&pairs, body, &[secret], now) {
            Err((_, refused @ Rejection::StaleTimestamp(_))) => refused.to_string(),
            other => panic!("not stale: {other:?}"),
        }
    };
    let ahead = at(sent.to_string(), sent - 400);
    assert!(
        ahead.starts_with("webhook-timestamp is 400s ahead of"),
        "{ahead}"
    );
    assert!(ahead.contains("clock out of step"), "{ahead}");
    let behind = at(sent.to_string(), sent + 400);
    assert!(
        behind.starts_with("webhook-timestamp is 400s behind"),
        "{behind}"
    );
    let millis = at(format!("{sent}000"), sent);
    assert!(millis.contains("looks like milliseconds"), "{millis}");
}

/// Signatures over several `webhook-signature` lines are one list.
#[test]
fn signatures_on_several_header_lines_are_one_list() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let body = br#"{"test": 2432232314}"#;
    let good = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let bad = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    for lines in [[bad, good], [good, bad]] {
        let mut headers = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
        ]);
        for line in lines {
            headers.append("webhook-signature", line.parse().expect("header value"));
        }
        let secrets = secrets(&[secret]);
        let admitted =
            authenticate_headers_at(&headers, &secrets, false, 1614265330).expect("admitted");
        assert_eq!(
            verify_body(admitted, &headers, body, &secrets),
            Ok((Provider::Generic, Event::Push(Push::default()))),
            "{lines:?}"
        );
    }
}

#[test]
fn gitlab_signing_token_checks() {
    let body = gitlab_push_body("push", "refs/heads/trunk", SHA_B, "null");
    let now = 1_780_000_000;
    let id = "13792a34-cac6-4fda-95a8-c58e00a3954e";
    let ts = now.to_string();
    let deliver = |signature: &str, list: &[&str]| {
        let pairs = [
            ("X-Gitlab-Event", "Push Hook"),
            ("webhook-id", id),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", signature),
        ];
        run_at(&pairs, body.as_bytes(), list, now)
    };
    // A whsec_ secret is keyed with its decoded bytes; any other as it is.
    let whsec = "whsec_c2lnbmluZy10b2tlbi1ieXRlcw==";
    let signed = standard_signature(b"signing-token-bytes", id, now, body.as_bytes());
    expect_push(deliver(&signed, &[whsec]), Provider::GitLab);
    let signed_raw = standard_signature(SECRET.as_bytes(), id, now, body.as_bytes());
    expect_push(deliver(&signed_raw, &[SECRET]), Provider::GitLab);
    // Several signatures (a sender's own rotation), versions we do not
    // verify skipped: one matching is enough.
    let several = format!("v1a,AAAA v1,{} {signed}", "A".repeat(44));
    expect_push(deliver(&several, &[whsec]), Provider::GitLab);
    // Rotation on our side: any configured secret.
    expect_push(
        deliver(&signed_raw, &[OLD_SECRET, SECRET]),
        Provider::GitLab,
    );
    for bad in [
        standard_signature(b"another key", id, now, body.as_bytes()),
        standard_signature(SECRET.as_bytes(), id, now + 1, body.as_bytes()),
        "v1,not base64!".to_string(),
        format!("v2,{}", &signed[3..]),
        "v1a,AAAA".to_string(),
    ] {
        assert_eq!(
            deliver(&bad, &[SECRET, whsec]),
            Err((Provider::GitLab, Rejection::BadSignature)),
            "{bad}"
        );
    }
    // The id and the timestamp are part of what is signed: without them
    // nothing verifies; a timestamp that is not a number is named so.
    let unsigned = [
        ("X-Gitlab-Event", "Push Hook"),
        ("webhook-signature", signed_raw.as_str()),
    ];
    assert_eq!(
        run_at(&unsigned, body.as_bytes(), &[SECRET], now),
        Err((Provider::GitLab, Rejection::BadSignature))
    );
    let wordy = [
        ("X-Gitlab-Event", "Push Hook"),
        ("webhook-id", id),
        ("webhook-timestamp", "soon"),
        ("webhook-signature", signed_raw.as_str()),
    ];
    let refused = run_at(&wordy, body.as_bytes(), &[SECRET], now);
    assert_eq!(
        refused,
        Err((Provider::GitLab, Rejection::BadTimestamp("soon".into())))
    );
    let said = refused.expect_err("refused").1;
    assert_eq!(said.metric_label(), "malformed");
    assert!(said.to_string().contains("in Unix seconds"), "{said}");
    // The signature is GitLab's stronger credential: a token sent beside a
    // wrong signature does not let the delivery through.
    let wrong = standard_signature(b"another key", id, now, body.as_bytes());
    let pairs = [
        ("X-Gitlab-Event", "Push Hook"),
        ("X-Gitlab-Token", SECRET),
        ("webhook-id", id),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", wrong.as_str()),
    ];
    assert_eq!(
        run_at(&pairs, body.as_bytes(), &[SECRET], now),
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
