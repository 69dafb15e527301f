//! What an http(s) connection needs beyond the URL and credentials: the
//! proxy, the trusted CA bundle, certificate checking and extra headers
//! (`--git-config http.*`, the bearer token). The git transport's reqwest
//! backend ignores git config for these (see docs/auth.md),
//! so they are applied to the reqwest client builder here, and the headers
//! by [`crate::git::transport`] to each request.
//!
//! Proxy environment variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`, and their lower-case forms) are honoured by reqwest itself;
//! `http.proxy` comes first, and `NO_PROXY` still exempts hosts from it (as
//! curl, and so git, does).

use std::sync::Arc;

use reqwest::blocking::ClientBuilder;

/// A plain-http proxy: where it listens, and the `Proxy-Authorization`
/// value its URL's user info makes (a secret: never printed).
pub struct HttpProxy {
    /// A name or an IP address (an IPv6 one without brackets).
    pub host: String,
    pub port: u16,
    pub authorization: Option<String>,
}

/// Settings of the http(s) client. `Debug` never shows header values (an
/// `Authorization` header is a secret) nor a proxy's user info.
#[derive(Clone, Default)]
pub struct HttpSettings {
    /// `http.proxy`: every request goes through this proxy (unless
    /// `NO_PROXY`); empty: no proxy at all, not even the environment's
    /// (as an empty `CURLOPT_PROXY`, so git).
    pub proxy: Option<String>,
    /// `http.sslCAInfo`: the PEM certificates trusted instead of the system's.
    pub ca_bundle: Option<CaBundle>,
    /// `http.sslVerify=false`: any server certificate is accepted.
    pub accept_invalid_certs: bool,
    /// `Name: value` lines sent with every request (`http.extraHeader`, bearer token).
    pub extra_headers: Vec<String>,
    /// `http.cookieFile` / `--cookie-file`: read at each connection (see
    /// [`crate::git::cookies`]).
    pub cookie_file: Option<std::path::PathBuf>,
}

/// A CA bundle read from a file, parsed once.
#[derive(Clone)]
pub struct CaBundle {
    pub path: std::path::PathBuf,
    certs: Arc<Vec<reqwest::Certificate>>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the CA bundle {path:?}: {message}")]
    CaBundle { path: String, message: String },
    #[error("invalid proxy URL {url:?}: {message}")]
    Proxy { url: String, message: String },
}

impl CaBundle {
    /// Reads and parses a PEM bundle; an unreadable file, one that is not
    /// PEM, or one without a certificate is an error naming the file.
    pub fn read(path: &std::path::Path) -> Result<Self, Error> {
        let fail = |message: String| Error::CaBundle {
            path: path.display().to_string(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("no PEM certificate in it".into()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            certs: Arc::new(certs),
        })
    }
}

impl std::fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<&str> = self
            .extra_headers
            .iter()
            .map(|h| h.split(':').next().unwrap_or_default())
            .collect();
        f.debug_struct("HttpSettings")
            .field(
                "proxy",
                &self.proxy.as_deref().map(crate::types::redact_url),
            )
            .field("ca_bundle", &self.ca_bundle.as_ref().map(|c| &c.path))
            .field("accept_invalid_certs", &self.accept_invalid_certs)
            .field("extra_header_names", &headers)
            .field("cookie_file", &self.cookie_file)
            .finish()
    }
}

impl HttpSettings {
    /// Checks the proxy URL, for start-up errors.
    pub fn check_proxy(url: &str) -> Result<(), Error> {
        if url.is_empty() {
            return Ok(());
        }
        proxy_for(url).map(drop)
    }

    /// The proxy a request to `url` goes through, and where it was set:
    /// `http://host:port (http.proxy)`, without user info (for messages).
    /// The same choice as the client's: `http.proxy` (an empty one: none),
    /// else the environment's variables for the URL's scheme, `NO_PROXY`
    /// exempting hosts (`*` all of them).
    pub fn proxy_in_use(&self, url: &str) -> Option<String> {
        let (hit, source) = self.intercept(url)?;
        let proxy = hit.uri();
        let (scheme, host) = (proxy.scheme_str()?, proxy.host()?);
        let port = proxy
            .port_u16()
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        Some(format!("{scheme}://{host}{port} ({source})"))
    }

    /// The plain-http proxy a request to `url` goes through ([`Self::proxy_in_use`]'s
    /// choice), to ask it again what it answers (see [`super::connect_probe`]);
    /// `None` without one, or for an https or SOCKS proxy.
    pub fn http_proxy_for(&self, url: &str) -> Option<HttpProxy> {
        let (hit, _) = self.intercept(url)?;
        let proxy = hit.uri();
        if proxy.scheme_str() != Some("http") {
            return None;
        }
        let host = proxy.host()?;
        Some(HttpProxy {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: proxy.port_u16().unwrap_or(80),
            authorization: hit
                .basic_auth()
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
    }

    /// The client's choice of proxy for `url` and where it was set.
    fn intercept(
        &self,
        url: &str,
    ) -> Option<(hyper_util::client::proxy::matcher::Intercept, &'static str)> {
        use hyper_util::client::proxy::matcher::Matcher;
        if self.proxy.as_deref() == Some("") || no_proxy_for_any_host(env_no_proxy()) {
            return None;
        }
        let uri: http::Uri = url.parse().ok()?;
        let (matcher, source) = match self.proxy.as_deref() {
            Some(proxy) => {
                let full = match proxy.contains("://") {
                    true => proxy.to_string(),
                    false => format!("http://{proxy}"),
                };
                let matcher = Matcher::builder()
                    .all(full)
                    .no(env_no_proxy().unwrap_or_default())
                    .build();
                (matcher, "http.proxy")
            }
            None => (Matcher::from_env(), "the environment's proxy variables"),
        };
        Some((matcher.intercept(&uri)?, source))
    }

    /// True when a header carries credentials (a 401 then means "rejected").
    pub fn sends_authorization(&self) -> bool {
        self.extra_headers.iter().any(|h| {
            h.split(':')
                .next()
                .is_some_and(|name| name.trim().eq_ignore_ascii_case("authorization"))
        })
    }

    /// A reqwest client configurator for everything but the headers (which
    /// the git transport adds to each request itself). Fallible parts are done now, so
    /// that the returned closure cannot fail.
    pub fn client_configurator(
        &self,
    ) -> Result<impl Fn(ClientBuilder) -> ClientBuilder + Send + Sync + 'static, Error> {
        let no_proxy = self.proxy.as_deref() == Some("") || no_proxy_for_any_host(env_no_proxy());
        let proxy = match self.proxy.as_deref() {
            Some(url) if !no_proxy => Some(proxy_for(url)?),
            _ => None,
        };
        let certs = self.ca_bundle.as_ref().map(|c| c.certs.clone());
        let accept_invalid = self.accept_invalid_certs;
        Ok(move |mut builder: ClientBuilder| {
            // reqwest's default, stated: each small request goes out at once
            // (see `transport::tune_daemon_socket` for what Nagle costs).
            builder = builder.tcp_nodelay(true);
            if no_proxy {
                builder = builder.no_proxy();
            } else if let Some(proxy) = &proxy {
                builder = builder.proxy(proxy.clone());
            }
            if let Some(certs) = &certs {
                builder = builder.tls_certs_only(certs.iter().cloned());
            }
            if accept_invalid {
                builder = builder.tls_danger_accept_invalid_certs(true);
            }
            builder
        })
    }
}

/// `NO_PROXY`, else `no_proxy` (reqwest's order).
fn env_no_proxy() -> Option<String> {
    std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .ok()
}

/// A `*` entry: no host goes through a proxy, as in curl (and so git).
/// reqwest's matcher applies `*` to host names only, not to IP addresses.
fn no_proxy_for_any_host(list: Option<String>) -> bool {
    list.is_some_and(|list| list.split(',').any(|entry| entry.trim() == "*"))
}

/// `http.proxy` as reqwest wants it: for every scheme, `NO_PROXY` honoured.
/// A proxy without a scheme is `http://` (as in git).
fn proxy_for(url: &str) -> Result<reqwest::Proxy, Error> {
    let full = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    reqwest::Proxy::all(&full)
        .map(|p| p.no_proxy(reqwest::NoProxy::from_env()))
        .map_err(|e| Error::Proxy {
            url: crate::types::redact_url(url),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_header_values_and_proxy_passwords() {
        let s = HttpSettings {
            proxy: Some("http://u:pr0xy-pw@127.0.0.1:3128".into()),
            extra_headers: vec!["Authorization: Bearer t0k3n".into()],
            ..Default::default()
        };
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("t0k3n") && !dbg.contains("pr0xy-pw"), "{dbg}");
        assert!(dbg.contains("Authorization"), "{dbg}");
        assert!(s.sends_authorization());
        assert!(!HttpSettings::default().sends_authorization());
    }

    #[test]
    fn the_proxy_in_use_is_named_without_user_info() {
        let with = |proxy: &str| HttpSettings {
            proxy: Some(proxy.into()),
            ..Default::default()
        };
        let url = "https://git.example.com/site.git";
        assert_eq!(
            with("http://u:pw@127.0.0.1:3128")
                .proxy_in_use(url)
                .as_deref(),
            Some("http://127.0.0.1:3128 (http.proxy)")
        );
        assert_eq!(
            with("127.0.0.1:3128").proxy_in_use(url).as_deref(),
            Some("http://127.0.0.1:3128 (http.proxy)"),
            "no scheme is http://, as in git"
        );
        assert_eq!(
            with("socks5h://[::1]:1080").proxy_in_use(url).as_deref(),
            Some("socks5h://[::1]:1080 (http.proxy)")
        );
        assert_eq!(
            with("").proxy_in_use(url),
            None,
            "an empty http.proxy: none"
        );
    }

    #[test]
    fn a_star_in_no_proxy_means_every_host() {
        assert!(no_proxy_for_any_host(Some("*".into())));
        assert!(no_proxy_for_any_host(Some("example.com, * ".into())));
        assert!(!no_proxy_for_any_host(Some(
            "*.example.com,10.0.0.0/8".into()
        )));
        assert!(!no_proxy_for_any_host(None));
    }

    #[test]
    fn proxy_urls_are_checked() {
        assert!(HttpSettings::check_proxy("http://127.0.0.1:3128").is_ok());
        assert!(HttpSettings::check_proxy("127.0.0.1:3128").is_ok());
        assert!(HttpSettings::check_proxy("http://[::1").is_err());
    }

    #[test]
    fn a_ca_bundle_that_is_not_pem_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate\n").expect("write");
        let e = CaBundle::read(&file)
            .err()
            .expect("no certificate")
            .to_string();
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let e = CaBundle::read(&dir.path().join("missing.pem"))
            .err()
            .expect("missing")
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
    }
}
