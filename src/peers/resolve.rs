//! Who the peers are: `--peers` parsed once ([`parse_list`]), resolved
//! again for every delivery ([`resolve_retrying`]) so that pods coming and
//! going behind a headless Service are followed, and this instance's own
//! addresses left out ([`Me`]).
//!
//! Resolution goes through the system resolver (`getaddrinfo`, as
//! `tokio::net::lookup_host` does on the blocking pool): it reads
//! `/etc/resolv.conf` and the pod's search domains like every other
//! program in the container, and asks for A and AAAA records alike. A
//! headless Service answers with one record per ready pod, this one
//! included: a pod knows its own IP only from its interfaces, so the
//! answer is compared with them ([`local_ips`]) and with the address the
//! HTTP server is bound to.

use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::fanout::{retry_delay, ATTEMPTS};

/// One `host:port` entry of `--peers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerName {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for PeerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `--peers`: a comma-separated list of `host:port` (a single DNS
/// name with its port is a list of one); IPv6 literals in brackets. Every
/// bad entry is reported.
pub fn parse_list(raw: &str) -> Result<Vec<PeerName>, Vec<String>> {
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for entry in raw.split(',').map(str::trim) {
        match parse_entry(entry) {
            Ok(name) if names.contains(&name) => {}
            Ok(name) => names.push(name),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(names)
    } else {
        Err(errors)
    }
}

fn parse_entry(entry: &str) -> Result<PeerName, String> {
    if entry.is_empty() {
        return Err("an entry is empty (a stray comma?)".into());
    }
    if entry.contains("://") || entry.contains('/') {
        return Err(format!(
            "{entry:?} is not host:port (give the peers' HTTP address without a scheme or \
             path, e.g. site-peers:8081)"
        ));
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{entry:?}: an IPv6 address is written [addr]:port"))?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{entry:?}: {host:?} is not an IPv6 address"))?;
        (host, port)
    } else {
        let (host, port) = entry.rsplit_once(':').ok_or_else(|| {
            format!("{entry:?} has no port: write host:port (the peers' --http-bind port)")
        })?;
        if host.contains(':') {
            return Err(format!("{entry:?}: write an IPv6 address as [addr]:port"));
        }
        (host, port)
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace()) {
        return Err(format!("{entry:?}: the host is empty or has spaces"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{entry:?}: the port must be 1 to 65535, got {port:?}"))?;
    Ok(PeerName {
        host: host.to_string(),
        port,
    })
}

/// How long one name may take to resolve.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every address the names resolve to (A and AAAA), sorted and without
/// duplicates, and the names that could not be resolved (with why).
pub async fn resolve(names: &[PeerName]) -> (BTreeSet<SocketAddr>, Vec<(PeerName, String)>) {
    let lookups = names.iter().cloned().map(|name| async move {
        // getaddrinfo retries per resolv.conf (up to ~30 s): a hint that
        // late is useless, so a slow resolver counts as unresolved.
        let lookup = tokio::net::lookup_host((name.host.as_str(), name.port));
        let found = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(found) => found.map(|found| found.collect::<Vec<_>>()),
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no DNS answer within {}s", LOOKUP_TIMEOUT.as_secs()),
            )),
        };
        (name, found)
    });
    let mut addrs = BTreeSet::new();
    let mut errors = Vec::new();
    for (name, found) in join_all(lookups).await {
        match found {
            Ok(found) => addrs.extend(found.into_iter().map(canonical)),
            Err(e) => errors.push((name, e.to_string())),
        }
    }
    (addrs, errors)
}

/// [`resolve`], asking again for the names that failed, as a send is
/// retried ([`ATTEMPTS`], [`retry_delay`]): a DNS server restarting or a
/// lost packet at the moment of a push must not lose the fan-out. Returns
/// the names still unresolved after the last attempt, with why.
pub async fn resolve_retrying(names: &[PeerName]) -> (BTreeSet<SocketAddr>, Vec<String>) {
    let mut addrs = BTreeSet::new();
    let mut pending = names.to_vec();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (found, failed) = resolve(&pending).await;
        addrs.extend(found);
        if failed.is_empty() || attempt >= ATTEMPTS {
            let unresolved = failed.iter().map(|(n, e)| format!("{n}: {e}")).collect();
            return (addrs, unresolved);
        }
        for (name, error) in &failed {
            tracing::debug!(peers = %name, error, attempt, "cannot resolve --peers yet; asking again");
        }
        pending = failed.into_iter().map(|(name, _)| name).collect();
        tokio::time::sleep(retry_delay(attempt)).await;
    }
}

/// Runs the futures concurrently (a handful of names: no need for a crate).
async fn join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        if let Ok(result) = handle.await {
            out.push(result);
        }
    }
    out
}

/// IPv4-mapped IPv6 addresses as plain IPv4, so comparisons agree.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// This instance, as peers would address it.
#[derive(Debug, Clone, Copy)]
pub struct Me {
    /// The HTTP server's bound address (`0.0.0.0`/`[::]` when it listens everywhere).
    pub bound: SocketAddr,
}

impl Me {
    /// Whether `peer` reaches this very instance: the port it listens on,
    /// and the address it is bound to, or, bound to every address, any of
    /// its interfaces' addresses or loopback (where every 127/8 address is ours).
    pub fn is(&self, peer: SocketAddr, local: &HashSet<IpAddr>) -> bool {
        if peer.port() != self.bound.port() {
            return false;
        }
        let ip = peer.ip().to_canonical();
        let bound = self.bound.ip().to_canonical();
        if bound.is_unspecified() {
            ip.is_loopback() || ip.is_unspecified() || local.contains(&ip)
        } else {
            ip == bound
        }
    }
}

/// The addresses of this host's (pod's) interfaces; empty if they cannot be
/// listed (then only the bound address identifies this instance).
pub fn local_ips() -> HashSet<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return HashSet::new();
    };
    interfaces
        .filter_map(|i| i.address)
        .filter_map(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(IpAddr::V4(v4.ip()))
            } else {
                a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
            }
        })
        .map(|ip| ip.to_canonical())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(host: &str, port: u16) -> PeerName {
        PeerName {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn lists_and_single_names_parse() {
        assert_eq!(
            parse_list("site-peers.default.svc.cluster.local:8081"),
            Ok(vec![name("site-peers.default.svc.cluster.local", 8081)])
        );
        assert_eq!(
            parse_list("10.0.0.1:80, 10.0.0.2:80,[fd00::1]:8081,10.0.0.1:80"),
            Ok(vec![
                name("10.0.0.1", 80),
                name("10.0.0.2", 80),
                name("fd00::1", 8081)
            ])
        );
        assert_eq!(name("fd00::1", 1).to_string(), "[fd00::1]:1");
    }

    #[test]
    fn every_bad_entry_is_reported() {
        let errors = parse_list("a,,http://b:1,c:0,d:x,::1:5,[zz]:1,e f:2").unwrap_err();
        assert_eq!(errors.len(), 8, "{errors:#?}");
        assert!(errors[0].contains("no port"), "{}", errors[0]);
        assert!(errors[1].contains("empty"), "{}", errors[1]);
        assert!(errors[2].contains("without a scheme"), "{}", errors[2]);
        assert!(errors[3].contains("1 to 65535"), "{}", errors[3]);
    }

    #[test]
    fn me_is_the_bound_address_or_any_local_one_when_bound_everywhere() {
        let local: HashSet<IpAddr> = ["10.1.2.3".parse().unwrap()].into();
        let bound = Me {
            bound: "127.0.0.2:8081".parse().unwrap(),
        };
        assert!(bound.is("127.0.0.2:8081".parse().unwrap(), &local));
        assert!(bound.is("[::ffff:127.0.0.2]:8081".parse().unwrap(), &local));
        assert!(!bound.is("127.0.0.3:8081".parse().unwrap(), &local));
        assert!(!bound.is("127.0.0.2:8082".parse().unwrap(), &local));
        let everywhere = Me {
            bound: "[::]:8081".parse().unwrap(),
        };
        assert!(everywhere.is("10.1.2.3:8081".parse().unwrap(), &local));
        assert!(everywhere.is("127.0.0.9:8081".parse().unwrap(), &local));
        assert!(!everywhere.is("10.1.2.4:8081".parse().unwrap(), &local));
        assert!(!everywhere.is("10.1.2.3:9".parse().unwrap(), &local));
    }

    #[test]
    fn local_ips_include_loopback() {
        assert!(local_ips().contains(&"127.0.0.1".parse::<IpAddr>().unwrap()));
    }

    #[tokio::test]
    async fn literal_addresses_resolve_to_themselves() {
        // Names are resolved against a real DNS server in tests/it/peers.rs
        // (this test stays off the network).
        let (addrs, errors) = resolve(&[name("127.0.0.7", 9), name("::ffff:127.0.0.7", 9)]).await;
        assert_eq!(
            addrs.into_iter().collect::<Vec<_>>(),
            ["127.0.0.7:9".parse().unwrap()]
        );
        assert!(errors.is_empty());
    }
}
