//! Unit and property tests of the forge module (split by provider and
//! concern; the helpers are here). Payloads are hand-written
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

mod filters;
mod github_gitea;
mod gitlab_bitbucket;
mod properties;
