//! GitHub App installation tokens: an RS256 JWT signed with the app's key
//! (issuer = client ID or app ID, issued 60 s in the past against clock
//! drift, valid 10 minutes, as GitHub documents) is POSTed to
//! `<base>/app/installations/<id>/access_tokens`; the token that comes back
//! is the password for `--repo`, user `x-access-token` (the user GitHub
//! documents for installation tokens over https; GitHub ignores the user
//! name, git-sync's `-` works too). Tokens are cached and minted again
//! when less than [`REFRESH_BEFORE`] of their life is left (git-sync: 30 s,
//! which a slow sync can overrun).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::http_settings::HttpSettings;

/// Mint a new token when the cached one has less than this left.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);
/// The user name sent with an installation token.
pub const TOKEN_USER: &str = "x-access-token";

/// GitHub App authentication, validated. `Debug` hides the key.
#[derive(Clone)]
pub struct GithubApp {
    /// API base URL, without a trailing `/`.
    pub base_url: String,
    pub key: Arc<AppKey>,
    /// The JWT issuer: the client ID or the application ID.
    pub issuer: String,
    pub installation_id: u64,
}

impl std::fmt::Debug for GithubApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubApp")
            .field("base_url", &self.base_url)
            .field("key", &"REDACTED")
            .field("issuer", &self.issuer)
            .field("installation_id", &self.installation_id)
            .finish()
    }
}
/// Longest wait for the token endpoint's whole answer (within the sync's budget).
const MINT_TIMEOUT: Duration = Duration::from_secs(10);
/// A token answer lists the installation's repositories: room for many.
const MAX_BODY: u64 = 1024 * 1024;

/// An RSA private key that signs JWTs. `Debug` hides it.
pub struct AppKey(RsaKeyPair);

impl std::fmt::Debug for AppKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppKey(REDACTED)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GitHub App: could not sign the JWT")]
    Sign,
    #[error("GitHub App: requesting an installation token from {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("GitHub App: {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
}

impl AppKey {
    /// Parses a PEM RSA key (PKCS#1 `RSA PRIVATE KEY`, as GitHub hands them
    /// out, or PKCS#8). Errors never quote the key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::PrivateKeyDer;
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| {
            "is not a PEM private key (expected -----BEGIN RSA PRIVATE KEY-----)".to_string()
        })?;
        let pair = match &der {
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            _ => return Err("is not an RSA private key (GitHub App keys are RSA)".into()),
        };
        pair.map(Self)
            .map_err(|e| format!("is not a usable RSA private key: {e}"))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut signature = vec![0; self.0.public_modulus_len()];
        self.0
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .map_err(|_| Error::Sign)?;
        Ok(signature)
    }
}

/// The app's JWT at `now`.
pub fn jwt(key: &AppKey, issuer: &str, now: SystemTime) -> Result<String, Error> {
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // An application ID is a number in GitHub's examples; a client ID a string.
    let iss = match issuer.parse::<u64>() {
        Ok(n) => serde_json::json!(n),
        Err(_) => serde_json::json!(issuer),
    };
    let claims = serde_json::json!({ "iat": now.saturating_sub(60), "exp": now + 600, "iss": iss });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(signing_input.as_bytes())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// An installation token and when it stops working. `Debug` hides it.
#[derive(Clone)]
pub struct Token {
    pub token: String,
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Token(REDACTED, expires {})",
            humantime::format_rfc3339(self.expires_at)
        )
    }
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    token: String,
    expires_at: String,
}

/// Asks GitHub for an installation token; the whole answer must arrive
/// within `timeout` (at most `MINT_TIMEOUT`).
pub fn mint(app: &GithubApp, http: &HttpSettings, timeout: Duration) -> Result<Token, Error> {
    let timeout = timeout.min(MINT_TIMEOUT);
    let deadline = Instant::now() + timeout;
    let url = format!(
        "{}/app/installations/{}/access_tokens",
        app.base_url, app.installation_id
    );
    let fail = |message: String| Error::Request {
        url: url.clone(),
        message,
    };
    let jwt = jwt(&app.key, &app.issuer, SystemTime::now())?;
    let client = super::bounded::client(http, timeout, &url).map_err(fail)?;
    let response = client
        .post(&url)
        .bearer_auth(jwt)
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .header(
            "User-Agent",
            concat!("git-sidecar/", env!("CARGO_PKG_VERSION")),
        )
        .send()
        .map_err(|e| fail(crate::types::error_chain(&e)))?;
    let status = response.status();
    let body = super::bounded::read_body(response, deadline, MAX_BODY);
    if !status.is_success() {
        return Err(Error::Status {
            url,
            status: status.as_u16(),
            message: github_message(&body.unwrap_or_default()),
        });
    }
    let body = body.map_err(|e| fail(e.to_string()))?;
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|_| fail("the answer has no \"token\" and \"expires_at\"".into()))?;
    let expires_at = humantime::parse_rfc3339(&parsed.expires_at).map_err(|_| {
        fail(format!(
            "\"expires_at\" is not RFC 3339: {:?}",
            parsed.expires_at
        ))
    })?;
    Ok(Token {
        token: parsed.token,
        expires_at,
    })
}

/// GitHub's `{"message": ...}`, cut short; never the whole body.
fn github_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| "(no message)".into());
    message.chars().take(200).collect()
}

/// The cached token, minted again when close to expiry.
#[derive(Default)]
pub struct TokenCache(Mutex<Option<Token>>);

impl TokenCache {
    /// A token good for at least [`REFRESH_BEFORE`], minting one if needed;
    /// `on_mint` sees each attempt's success (for the metric). When minting
    /// fails but the cached token has not expired yet, that one is used.
    pub fn get(
        &self,
        mint: impl FnOnce() -> Result<Token, Error>,
        on_mint: impl FnOnce(bool),
    ) -> Result<Token, Error> {
        let mut cached = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        if let Some(token) = cached
            .as_ref()
            .filter(|t| t.expires_at > now + REFRESH_BEFORE)
        {
            return Ok(token.clone());
        }
        let minted = mint();
        on_mint(minted.is_ok());
        match minted {
            Ok(token) => {
                tracing::info!(expires_at = %humantime::format_rfc3339(token.expires_at), "minted a GitHub App installation token");
                *cached = Some(token.clone());
                Ok(token)
            }
            Err(e) => match cached.as_ref().filter(|t| t.expires_at > now) {
                Some(token) => {
                    tracing::warn!(error = %e, "could not refresh the GitHub App token; using the current one until it expires");
                    Ok(token.clone())
                }
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{KeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    const KEY: &str = include_str!("../../tests/it/fixtures/github-app-test-key.pem");

    #[test]
    fn jwt_is_rs256_with_github_claims_and_verifies() {
        let key = AppKey::from_pem(KEY.as_bytes()).expect("test key");
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = jwt(&key, "123", now).expect("signed");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["iss"], 123);
        assert_eq!(claims["iat"], 1_700_000_000 - 60);
        assert_eq!(claims["exp"], 1_700_000_000 + 600);
        let public = UnparsedPublicKey::new(
            &RSA_PKCS1_2048_8192_SHA256,
            key.0.public_key().as_ref().to_vec(),
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(input.as_bytes(), &signature).is_ok());
        let client = jwt(&key, "Iv1.abc", now).expect("signed");
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(client.split('.').nth(1).expect("claims"))
                .expect("b64"),
        )
        .expect("json");
        assert_eq!(claims["iss"], "Iv1.abc");
    }

    #[test]
    fn bad_keys_are_refused_without_quoting_them() {
        for bad in [
            "",
            "garbage",
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n",
        ] {
            let e = AppKey::from_pem(bad.as_bytes()).expect_err("refused");
            assert!(!e.contains("c2VjcmV0") && !e.contains("garbage"), "{e}");
        }
    }

    #[test]
    fn cache_refreshes_close_to_expiry_and_falls_back_while_valid() {
        let cache = TokenCache::default();
        let token = |secs: u64, name: &str| Token {
            token: name.into(),
            expires_at: SystemTime::now() + Duration::from_secs(secs),
        };
        let ok = |t: Token| move || Ok(t);
        let got = cache.get(ok(token(3600, "a")), |_| {}).expect("minted");
        assert_eq!(got.token, "a");
        let got = cache
            .get(|| panic!("must use the cache"), |_| {})
            .expect("cached");
        assert_eq!(got.token, "a");
        // Close to expiry: minted again.
        *cache.0.lock().expect("lock") = Some(token(60, "short"));
        let got = cache.get(ok(token(3600, "b")), |_| {}).expect("refreshed");
        assert_eq!(got.token, "b");
        // Minting fails: the still-valid token is used, the failure counted.
        *cache.0.lock().expect("lock") = Some(token(60, "short"));
        let mut seen = None;
        let got = cache
            .get(|| Err(Error::Sign), |ok| seen = Some(ok))
            .expect("fallback");
        assert_eq!((got.token.as_str(), seen), ("short", Some(false)));
    }
}
