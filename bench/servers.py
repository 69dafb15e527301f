"""Loopback servers of the benchmark: `git daemon` and a byte-counting TCP relay.

Everything listens on and connects to 127.0.0.1 only.
"""

import socket
import subprocess
import threading
import time

import procs

LOCALHOST = "127.0.0.1"


def free_port():
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


def wait_listening(port, proc=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            socket.create_connection((LOCALHOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {LOCALHOST}:{port} after {timeout}s")


class GitDaemon:
    """`git daemon` serving every repository under `base` over git:// on 127.0.0.1."""

    def __init__(self, base, env, log_path):
        self.port = free_port()
        self._log = open(log_path, "ab")
        cmd = ["git", "daemon", f"--listen={LOCALHOST}", f"--port={self.port}", "--reuseaddr",
               "--export-all", f"--base-path={base}", "--enable=upload-pack",
               "--informative-errors", str(base)]
        self.proc = procs.start(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        wait_listening(self.port, self.proc)

    def url(self, name):
        return f"git://{LOCALHOST}:{self.port}/{name}"

    def _server_pid(self):
        """`git daemon` runs `git-daemon` as its child, which serves (and
        reaps) each connection."""
        children = procs.children(self.proc.pid)
        if len(children) != 1:
            raise RuntimeError(f"git daemon (pid {self.proc.pid}) has {len(children)} children, not 1")
        return children[0]

    def cpu_seconds(self):
        """CPU the daemon and the processes it started and reaped (each
        connection's `git upload-pack` and its `pack-objects`) have used so
        far, to the kernel's clock tick (10 ms), once every connection is
        over and reaped (a process not yet reaped is not counted yet)."""
        pid = self._server_pid()
        deadline = time.monotonic() + 10
        while procs.children(pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"git-daemon (pid {pid}) still serves a connection after 10 s")
            time.sleep(0.01)
        return procs.cpu_seconds(pid, reaped=True)

    def close(self):
        procs.stop(self.proc)
        self._log.close()


class _Pair:
    """Both sockets of one relayed connection, closed when both directions ended."""

    def __init__(self, a, b):
        self.socks = (a, b)
        self.open_pumps = 2
        self.lock = threading.Lock()

    def done(self):
        with self.lock:
            self.open_pumps -= 1
            last = self.open_pumps == 0
        if last:
            for s in self.socks:
                s.close()


class ByteRelay:
    """A TCP relay on 127.0.0.1 in front of `target_port`, counting bytes each way."""

    def __init__(self, target_port):
        self.target = (LOCALHOST, target_port)
        self.lock = threading.Lock()
        self.to_server = 0
        self.to_client = 0
        self.connections = 0
        self.listener = socket.create_server((LOCALHOST, 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, name):
        return f"git://{LOCALHOST}:{self.port}/{name}"

    def reset(self):
        with self.lock:
            self.to_server = self.to_client = self.connections = 0

    def counts(self):
        """(bytes client→server, bytes server→client, connections) so far."""
        with self.lock:
            return self.to_server, self.to_client, self.connections

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            with self.lock:
                self.connections += 1
            pair = _Pair(client, server)
            threading.Thread(target=self._pump, args=(client, server, "to_server", pair), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "to_client", pair), daemon=True).start()

    def _pump(self, src, dst, counter, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                with self.lock:
                    setattr(self, counter, getattr(self, counter) + len(data))
        except OSError:
            pass
        finally:
            # Pass the half-close on, then let the other pump finish.
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            pair.done()

    def close(self):
        self.closed = True
        self.listener.close()
