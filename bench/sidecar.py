"""A running git-sidecar under measurement, and the HTTP calls the benchmark makes to it.

Owns starting the binary with a loopback `--http-bind`, its metrics, the
bearer `POST /sync` trigger, signed GitHub push deliveries, and waiting for
the published link to reach a commit.
"""

import hashlib
import hmac
import http.client
import json
import os
import time

import procs
from servers import LOCALHOST, free_port

TOKEN = "bench-trigger-token"
SECRET = "bench-webhook-secret"


def sidecar_env(extra=None):
    """A minimal environment: no GITSYNC_* or proxy variables of the caller leak in."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent", "LC_ALL": "C"}
    env.update(extra or {})
    return env


def one_time_cmd(binary, url, root):
    return [str(binary), "--repo", url, "--root", str(root), "--link", "site", "--one-time"]


def link_target(root):
    """Basename of the published link's target, or None before the first publish."""
    try:
        return os.path.basename(os.readlink(os.path.join(root, "site")))
    except OSError:
        return None


def wait_link(root, sha, timeout, poll=0.001):
    """Seconds until `<root>/site` points at `sha` (polled every `poll` s)."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while link_target(root) != sha:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"link in {root} still at {link_target(root)}, not {sha}, after {timeout}s")
        time.sleep(poll)
    return time.perf_counter() - t0


class Running:
    """git-sidecar as a long-running process with `--http-bind 127.0.0.1:<port>`."""

    def __init__(self, binary, url, root, period, log_path, extra_args=(), env=None):
        self.root = str(root)
        self.port = free_port()
        cmd = [str(binary), "--repo", url, "--root", self.root, "--link", "site",
               "--period", period, "--http-bind", f"{LOCALHOST}:{self.port}", "--http-metrics",
               "--incoming-webhook-rate-limit", "100000", *extra_args]
        self._log = open(log_path, "ab")
        full_env = sidecar_env({"GITSYNC_SYNC_TRIGGER_TOKEN": TOKEN,
                                "GITSYNC_INCOMING_WEBHOOK_SECRET": SECRET, **(env or {})})
        self.proc = procs.start(cmd, env=full_env, stdout=self._log, stderr=self._log)
        self.pid = self.proc.pid

    def wait_published(self, timeout=600.0):
        """Waits for the first publish and for the sync that made it to be counted."""
        deadline = time.monotonic() + timeout
        while link_target(self.root) is None or self.syncs() < 1:
            if self.proc.poll() is not None:
                raise RuntimeError(f"git-sidecar exited with {self.proc.returncode}; see {self._log.name}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"git-sidecar did not publish within {timeout}s; see {self._log.name}")
            time.sleep(0.01)

    def request(self, method, path, body=b"", headers=None):
        conn = http.client.HTTPConnection(LOCALHOST, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def metrics(self):
        """Sample name with labels -> value, from /metrics."""
        try:
            status, body = self.request("GET", "/metrics")
        except OSError:
            return {}
        if status != 200:
            return {}
        values = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def sync_counts(self):
        """git_sync_count_total by status."""
        m = self.metrics()
        return {s: m.get(f'git_sync_count_total{{status="{s}"}}', 0.0) for s in ("success", "noop", "error")}

    def syncs(self):
        """Finished sync passes of any outcome."""
        return sum(self.sync_counts().values())

    def wait_syncs(self, at_least, timeout=600.0):
        deadline = time.monotonic() + timeout
        while self.syncs() < at_least:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {at_least} syncs counted after {timeout}s")
            time.sleep(0.005)

    def trigger(self):
        status, body = self.request("POST", "/sync", headers={"Authorization": f"Bearer {TOKEN}"})
        if status != 202 and status != 200:
            raise RuntimeError(f"POST /sync answered {status}: {body[:200]!r}")

    def github_push(self, sha, url):
        """POSTs a GitHub push of refs/heads/main to `sha`, signed with X-Hub-Signature-256."""
        body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": sha,
                           "repository": {"clone_url": url, "default_branch": "main"}}).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "push", "Content-Type": "application/json",
                   "X-Hub-Signature-256": signature}
        status, reply = self.request("POST", "/webhook", body=body, headers=headers)
        if status != 202:
            raise RuntimeError(f"webhook answered {status}: {reply[:200]!r}")

    def close(self):
        procs.stop(self.proc)
        self._log.close()
