//! Property tests (proptest) over headers, signed bodies, JSON payloads and matching.

use super::*;

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
