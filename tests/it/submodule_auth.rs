//! Submodules on private servers, end to end: a superproject and two
//! submodules on three password-protected http servers (each credential
//! reaches only its own server), and a superproject and a submodule on two
//! sshd servers that each accept only their own key. Both follow submodule
//! updates, and a wrong credential or a missing host key fails the sync
//! naming the submodule while the old content stays published.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::support::sshd::{self, keygen, ssh_args, Sshd};
use crate::support::*;

/// Distinctive, so that finding one anywhere is no accident.
const SITE_PASS: &str = "Aa1-site-PASS-x9";
const THEME_PASS: &str = "Bb2-theme-PASS-y8";
const DATA_PASS: &str = "Cc3-data-PASS-z7";
const WRONG_PASS: &str = "Ww0-wrong-PASS-q6";

/// One repository on its own http server that takes only `user`/`pass`.
struct Private {
    up: Upstream,
    http: HttpGit,
    user: &'static str,
    pass: &'static str,
}

impl Private {
    fn start(name: &str, user: &'static str, pass: &'static str) -> Self {
        let up = Upstream::named(name);
        let http = HttpGit::start(
            up.base(),
            HttpOpts {
                basic_auth: Some((user.into(), pass.into())),
                ..Default::default()
            },
        );
        Private {
            up,
            http,
            user,
            pass,
        }
    }

    fn url(&self) -> String {
        self.http.url(self.up.name())
    }

    /// The `user:password` pairs this server received, decoded.
    fn received(&self) -> Vec<String> {
        self.http
            .authorizations()
            .iter()
            .map(|h| {
                let encoded = h.strip_prefix("Basic ").unwrap_or_else(|| panic!("{h}"));
                let raw = STANDARD.decode(encoded.trim()).expect("base64");
                String::from_utf8(raw).expect("utf-8 credentials")
            })
            .collect()
    }

    /// This server got its own credentials, and no other password than
    /// those in `allowed`.
    fn assert_only_received(&self, allowed: &[&str]) {
        let received = self.received();
        let own = format!("{}:{}", self.user, self.pass);
        assert!(received.contains(&own), "{}: {received:?}", self.user);
        for pair in &received {
            let ok = allowed
                .iter()
                .any(|pass| *pair == format!("{}:{pass}", self.user));
            assert!(ok, "{} received {pair:?}", self.user);
        }
    }
}

fn write_secret(path: &Path, secret: &str) {
    fs::write(path, format!("{secret}\n")).expect("writing a password file");
}

/// site (A, `--username` + GITSYNC_PASSWORD) with submodules theme (B,
/// `--credential` with a password) and data (C, `--credential` with a
/// password file), each on its own server with its own user and password.
#[test]
fn submodules_on_three_servers_get_each_their_own_password() {
    let site = Private::start("site", "site-bot", SITE_PASS);
    let theme = Private::start("theme", "theme-bot", THEME_PASS);
    let data = Private::start("data", "data-bot", DATA_PASS);
    let t1 = theme.up.commit_file("style.css", "t1\n", "theme one");
    let d1 = data.up.commit_file("data.json", "{\"v\":1}\n", "data one");
    let modules = gitmodules(&[
        ("theme", "theme", &theme.url()),
        ("data", "vendor/data", &data.url()),
    ]);
    site.up.commit_file("index.html", "hi\n", "page");
    let first = site
        .up
        .commit_gitlinks(&modules, &[("theme", &t1), ("vendor/data", &d1)], "both");

    let s = Scratch::new();
    let data_file = s.dir.path().join("data-password");
    write_secret(&data_file, DATA_PASS);
    let credentials = serde_json::json!([
        {"url": theme.http.url(""), "username": theme.user, "password": theme.pass},
        {"url": data.http.url(""), "username": data.user, "password-file": data_file},
    ]);
    let run = s
        .sidecar(&site.url())
        .arg(format!("--username={}", site.user))
        .env("GITSYNC_PASSWORD", site.pass)
        .arg(format!("--credential={credentials}"))
        .args(["--period", "100ms", "--max-failures", "-1"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);
    assert_tree_matches_commit(&s.link(), &site.up, &first);
    assert_tree_matches_commit(&s.link().join("theme"), &theme.up, &t1);
    assert_tree_matches_commit(&s.link().join("vendor/data"), &data.up, &d1);

    // A submodule moves: published.
    let t2 = theme.up.commit_file("style.css", "t2\n", "theme two");
    let second = site
        .up
        .commit_gitlinks(&modules, &[("theme", &t2)], "theme moves");
    run.wait_for_link_hash(&s.link(), &second);
    assert_tree_matches_commit(&s.link().join("theme"), &theme.up, &t2);

    // data's password file now holds a wrong password: the sync that needs
    // data fails naming it, and the second commit stays published.
    write_secret(&data_file, WRONG_PASS);
    let d2 = data.up.commit_file("data.json", "{\"v\":2}\n", "data two");
    let third = site
        .up
        .commit_gitlinks(&modules, &[("vendor/data", &d2)], "data moves");
    let expected = format!(
        "submodule vendor/data ({}): could not fetch commit {d2}: authentication failed: {} rejected the credentials",
        data.url(),
        data.url()
    );
    run.wait_until(DEADLINE, "the submodule's auth failure", || {
        run.stderr().contains(&expected)
    });
    assert_eq!(s.published().as_deref(), Some(second.as_str()));
    assert_tree_matches_commit(&s.link().join("vendor/data"), &data.up, &d1);

    // The right password again (the file is read at every sync).
    write_secret(&data_file, DATA_PASS);
    run.wait_for_link_hash(&s.link(), &third);
    assert_tree_matches_commit(&s.link().join("vendor/data"), &data.up, &d2);

    site.assert_only_received(&[SITE_PASS]);
    theme.assert_only_received(&[THEME_PASS]);
    data.assert_only_received(&[DATA_PASS, WRONG_PASS]);
    // What the process wrote (not `logs()`, which shows our command line).
    let written = format!("{}\n{}", run.stdout(), run.stderr());
    for secret in [SITE_PASS, THEME_PASS, DATA_PASS, WRONG_PASS] {
        assert!(!written.contains(secret), "{secret} logged:\n{written}");
    }
}

fn write_known_hosts(path: &Path, servers: &[&Sshd]) {
    let lines: Vec<String> = servers
        .iter()
        .map(|s| s.known_hosts_line(s.port()))
        .collect();
    fs::write(path, lines.join("\n") + "\n").expect("writing known_hosts");
}

/// site on sshd 1 (key 1 only), its submodule on sshd 2 (key 2 only, an
/// absolute ssh:// URL); the sidecar has both keys and both host keys.
#[test]
fn an_ssh_submodule_on_another_server_uses_its_own_key() {
    let s = Scratch::new();
    let key1 = keygen(s.dir.path(), "site_key", "ed25519", "");
    let key2 = keygen(s.dir.path(), "lib_key", "ecdsa", "");
    let (sshd1, sshd2) = (Sshd::start(&[&key1]), Sshd::start(&[&key2]));
    let site = Upstream::named("site");
    let lib = Upstream::named("lib");
    let l1 = lib.commit_file("lib.txt", "one\n", "lib one");
    let modules = gitmodules(&[("lib", "lib", &sshd2.url(lib.path()))]);
    site.commit_file("index.html", "hi\n", "page");
    let first = site.commit_gitlinks(&modules, &[("lib", &l1)], "add lib");

    let known_hosts: PathBuf = s.dir.path().join("known_hosts");
    write_known_hosts(&known_hosts, &[&sshd1, &sshd2]);
    let run = s
        .sidecar(&sshd1.url(site.path()))
        .args(ssh_args(&[&key1, &key2], &known_hosts))
        .args(["--period", "100ms", "--max-failures", "-1"])
        .spawn();
    run.wait_for_link_hash(&s.link(), &first);
    assert_tree_matches_commit(&s.link(), &site, &first);
    assert_tree_matches_commit(&s.link().join("lib"), &lib, &l1);
    assert!(sshd2.logins() >= 1, "{}", sshd2.log());

    let l2 = lib.commit_file("lib.txt", "two\n", "lib two");
    let second = site.commit_gitlinks(&modules, &[("lib", &l2)], "lib moves");
    run.wait_for_link_hash(&s.link(), &second);
    assert_tree_matches_commit(&s.link().join("lib"), &lib, &l2);

    // known_hosts loses server 2: the next submodule fetch is refused before
    // any login, and the second commit stays published.
    write_known_hosts(&known_hosts, &[&sshd1]);
    let logins = sshd2.logins();
    let l3 = lib.commit_file("lib.txt", "three\n", "lib three");
    site.commit_gitlinks(&modules, &[("lib", &l3)], "lib moves again");
    let expected = format!(
        "submodule lib ({}): could not fetch commit {l3}: host key verification failed: {} is not in {}",
        sshd2.url(lib.path()),
        sshd::known_hosts_name(sshd2.host(), sshd2.port()),
        known_hosts.display()
    );
    run.wait_until(DEADLINE, "the submodule's host key failure", || {
        run.stderr().contains(&expected)
    });
    assert_eq!(s.published().as_deref(), Some(second.as_str()));
    assert_tree_matches_commit(&s.link().join("lib"), &lib, &l2);
    assert_eq!(sshd2.logins(), logins, "a login to an unverified host");
}
