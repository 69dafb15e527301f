"""The `verify` scenario: what `--verify-signatures=head` costs per publish.

A running git-sidecar publishes commits signed by the real tools (`git commit
-S` with an ssh-keygen ed25519 key, and with a gpg ed25519 key). Its cost is
the `verify` lap of each publishing pass, read from the pass timings it logs
at `-v 1` (key files read, the commit's payload split, the signature checked).
Baseline: `git verify-commit` on the same commit, measured on the git CLI
itself (a whole process: git, then the ssh-keygen or gpg it runs).
"""

import os
import re
import subprocess
import time

from scenarios import PUBLISH_TIMEOUT, SIDECAR, clean
from sidecar import Running, wait_link

GIT_VERIFY = "git verify-commit (git CLI; runs ssh-keygen or gpg)"
LAP = re.compile(rb"verify=([0-9]+\.[0-9]+)ms")
EMAIL = "bench@example.com"


def _run(cmd, env, cwd=None):
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed: {done.stderr.decode(errors='replace')[-400:]}")
    return done.stdout


class SshSigner:
    label = "SSH ed25519"

    def __init__(self, work, env):
        self.key = work / "id_ed25519"
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", EMAIL, "-f", self.key], env)
        self.keys_file = work / "allowed_signers"
        self.keys_file.write_text(f"{EMAIL} namespaces=\"git\" {(work / 'id_ed25519.pub').read_text()}")
        self.git_config = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.key}",
                           "-c", f"gpg.ssh.allowedSignersFile={self.keys_file}"]
        self.flag = f"--verify-allowed-signers={self.keys_file}"
        self.env = env

    def close(self):
        pass


class PgpSigner:
    label = "OpenPGP ed25519"

    def __init__(self, work, env):
        home = work / "gnupg"
        home.mkdir(mode=0o700)
        self.env = {**env, "GNUPGHOME": str(home)}
        _run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
              f"Bench <{EMAIL}>", "ed25519", "sign", "0"], self.env)
        listing = _run(["gpg", "--batch", "--with-colons", "--list-keys", EMAIL], self.env).decode()
        fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
        self.keys_file = work / "keyring.asc"
        self.keys_file.write_bytes(_run(["gpg", "--batch", "--export", "--armor", fpr], self.env))
        self.git_config = ["-c", "gpg.format=openpgp", "-c", f"user.signingkey={fpr}"]
        self.flag = f"--verify-pgp-keyring={self.keys_file}"

    def close(self):
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self.env, capture_output=True)


def _commit(repo, signer, n):
    (repo / "page.md").write_text(f"revision {n}\n")
    git = ["git", "-C", repo, *signer.git_config]
    _run([*git, "add", "page.md"], signer.env)
    _run([*git, "commit", "-q", "-S", "-m", f"revision {n}"], signer.env)
    return _run(["git", "-C", repo, "rev-parse", "HEAD"], signer.env).decode().strip()


def _lap_after(log_path, offset):
    """The `verify` lap (seconds) of the last pass timings logged after `offset`."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        laps = LAP.findall(f.read())
    if not laps:
        raise RuntimeError(f"no verify lap in the pass timings of {log_path} (is -v 1 on?)")
    return float(laps[-1]) / 1000


def verify_cost(ctx, res):
    """Per publish: the verify lap of a running sidecar, and `git verify-commit`."""
    fs, base = next(iter(ctx.fs_dirs.items()))
    for make in (SshSigner, PgpSigner):
        work = base / f"verify-{make.__name__.lower()}"
        clean(work)
        work.mkdir(parents=True)
        signer = make(work, {**ctx.git_env, "GIT_COMMITTER_EMAIL": EMAIL, "GIT_AUTHOR_EMAIL": EMAIL})
        ctx.log(f"verify: {signer.label}, {ctx.runs * 3} signed commits ...")
        repo = work / "repo"
        _run(["git", "init", "-q", repo], signer.env)
        _commit(repo, signer, 0)
        log_path = ctx.log_dir / f"verify-{make.__name__.lower()}.log"
        sc = Running(ctx.binary, f"file://{repo}", work / "root", "1h", log_path,
                     extra_args=["--verify-signatures=head", signer.flag, "--verify-committers", "-v", "1"])
        try:
            sc.wait_published()
            for n in range(1, ctx.runs * 3 + 1):
                sha = _commit(repo, signer, n)
                offset = os.path.getsize(log_path)
                before = sc.syncs()
                sc.trigger()
                wait_link(sc.root, sha, PUBLISH_TIMEOUT)
                sc.wait_syncs(before + 1, PUBLISH_TIMEOUT)
                res.add("verify", signer.label, fs, SIDECAR, wall=_lap_after(log_path, offset))
                t0 = time.perf_counter()
                _run(["git", "-C", repo, *signer.git_config, "verify-commit", sha], signer.env)
                res.add("verify", signer.label, fs, GIT_VERIFY, wall=time.perf_counter() - t0)
        finally:
            sc.close()
            signer.close()
            clean(work)
