//! Shallow fetches over git protocol v0/v1: the capabilities gix may send.
//!
//! Over v0/v1 the client names the capabilities it wants on its first `want`
//! line. gix-protocol 0.68 (`fetch::Arguments::new`) copies there every
//! capability it knows that the server advertised, `deepen-relative`
//! included. git's upload-pack then reads `deepen <n>` as "n more commits
//! below the client's current shallow boundary"; a client with no boundary
//! yet (the first fetch) gets the whole history and no `shallow` lines, and
//! a client that has one gets its boundary deepened instead of reset to `n`.
//!
//! We only ever ask for absolute depths (`deepen <n>` from the wanted tip,
//! git's `--depth`), never relative ones (`--deepen`), so the fix is to not
//! let gix see `deepen-relative` in the server's advertisement: the
//! transport's handshake (see [`super::transport`]) passes the capabilities
//! through [`for_fetch`]. Everything else is left as advertised; protocol v2
//! is untouched (there the client sends `deepen-relative` only when asked).

use gix::bstr::{BStr, BString, ByteSlice};
use gix::protocol::transport::client::Capabilities;
use gix::protocol::transport::Protocol;

/// Capabilities gix must not request over v0/v1 (see the module docs).
const WITHHELD: &[&str] = &["deepen-relative"];

/// The server's `capabilities` as gix should see them for `protocol`.
pub fn for_fetch(protocol: Protocol, capabilities: Capabilities) -> Capabilities {
    if protocol == Protocol::V2 || !capabilities.iter().any(|c| withheld(c.name())) {
        return capabilities;
    }
    // v0/v1 capabilities are what follows the NUL of the first ref line, space separated.
    let kept: Vec<BString> = capabilities
        .iter()
        .filter(|c| !withheld(c.name()))
        .map(|c| match c.value() {
            Some(value) => [c.name().as_bytes(), b"=", value.as_bytes()]
                .concat()
                .into(),
            None => c.name().to_owned(),
        })
        .collect();
    let mut line = BString::from("\0");
    line.extend_from_slice(&kept.join(&b' '));
    match Capabilities::from_bytes(&line) {
        Ok((filtered, _)) => filtered,
        // Nothing left (a server advertising deepen-relative alone): gix cannot
        // hold an empty list; with no `shallow` capability it refuses depth
        // fetches anyway, so the unfiltered list does no harm.
        Err(_) => capabilities,
    }
}

fn withheld(name: &BStr) -> bool {
    WITHHELD.iter().any(|w| name == w.as_bytes().as_bstr())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advertised(caps: &str) -> Capabilities {
        Capabilities::from_bytes(format!("\0{caps}").as_bytes())
            .expect("valid advertisement")
            .0
    }

    fn names(caps: &Capabilities) -> Vec<String> {
        caps.iter().map(|c| c.name().to_string()).collect()
    }

    /// What git 2.47's upload-pack advertises over v0 (with allowReachableSHA1InWant).
    const GIT_V0: &str = "multi_ack thin-pack side-band side-band-64k ofs-delta shallow \
        deepen-since deepen-not deepen-relative no-progress include-tag multi_ack_detailed \
        allow-reachable-sha1-in-want no-done symref=HEAD:refs/heads/main \
        object-format=sha1 agent=git/2.47.3";

    #[test]
    fn deepen_relative_is_withheld_over_v0_and_v1() {
        for protocol in [Protocol::V0, Protocol::V1] {
            let caps = for_fetch(protocol, advertised(GIT_V0));
            let names = names(&caps);
            assert!(!names.iter().any(|n| n == "deepen-relative"), "{names:?}");
            for kept in ["shallow", "deepen-since", "multi_ack_detailed", "no-done"] {
                assert!(caps.contains(kept), "{kept} must stay: {names:?}");
            }
            assert_eq!(names.len(), 16, "only deepen-relative goes: {names:?}");
        }
    }

    #[test]
    fn values_are_kept() {
        let caps = for_fetch(Protocol::V0, advertised(GIT_V0));
        let value = |name| {
            caps.capability(name)
                .and_then(|c| c.value().map(|v| v.to_string()))
        };
        assert_eq!(value("symref").as_deref(), Some("HEAD:refs/heads/main"));
        assert_eq!(value("agent").as_deref(), Some("git/2.47.3"));
        assert_eq!(value("object-format").as_deref(), Some("sha1"));
    }

    #[test]
    fn v2_and_lists_without_it_are_untouched() {
        let caps = for_fetch(Protocol::V2, advertised(GIT_V0));
        assert!(caps.contains("deepen-relative"));
        let plain = "shallow ofs-delta agent=git/2.47.3";
        assert_eq!(names(&for_fetch(Protocol::V0, advertised(plain))).len(), 3);
    }

    #[test]
    fn a_list_of_deepen_relative_alone_stays_parseable() {
        let caps = for_fetch(Protocol::V1, advertised("deepen-relative"));
        assert_eq!(names(&caps), ["deepen-relative"]);
    }
}
