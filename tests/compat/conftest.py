"""Fixtures that run the real `lambdamesh` binary on 127.0.0.1:0 and stop it afterwards."""

import os
import re
import subprocess
import tempfile
import threading

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _binary():
    path = os.environ.get("LAMBDAMESH_BIN")
    if not path:
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        path = os.path.join(target, "debug", "lambdamesh")
    if not os.path.exists(path):
        raise RuntimeError(f"lambdamesh binary not found at {path}: run `cargo build -p lambdamesh` (scripts/test.sh does)")
    return path


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [_binary(), *args, "-http-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LAMBDAMESH_LOG": "info"},
        )
        found = threading.Event()
        self.log = []
        self.addr = None

        def pump():
            for line in self.proc.stderr:
                self.log.append(line)
                m = re.search(r"HTTP API at http://([0-9.]+:[0-9]+)/", line)
                if m and not found.is_set():
                    self.addr = m.group(1)
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        if not found.wait(30):
            self.stop()
            raise RuntimeError("lambdamesh did not start:\n" + "".join(self.log))
        self.host, port = self.addr.split(":")
        self.port = int(port)

    def stop(self):
        # SIGTERM first: a `-dev` server removes its temporary data dir on a clean exit (SIGKILL
        # would leave one behind in /tmp per test).
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HaCluster:
    """A real 3-member etcd cluster and 3 `lambdamesh server` replicas on it (docs/ha.md); the
    tests talk to replica r1 (`host`, `port`), writes and reads go through the shared log."""

    def __init__(self, d):
        import shutil
        import time
        import urllib.request

        self.etcd = []
        members = [(f"e{i}", _free_port(), _free_port()) for i in range(3)]
        cluster = ",".join(f"{n}=http://127.0.0.1:{pp}" for n, _, pp in members)
        for n, cp, pp in members:
            self.etcd.append(subprocess.Popen(
                [shutil.which("etcd") or "etcd", "--name", n, "--data-dir", os.path.join(d, n),
                 "--listen-client-urls", f"http://127.0.0.1:{cp}", "--advertise-client-urls", f"http://127.0.0.1:{cp}",
                 "--listen-peer-urls", f"http://127.0.0.1:{pp}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", "compat",
                 "--logger", "zap", "--log-outputs", os.path.join(d, f"{n}.log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _, cp, _ in members:
            for _ in range(300):
                try:
                    if b'"health":"true"' in urllib.request.urlopen(f"http://127.0.0.1:{cp}/health", timeout=1).read():
                        break
                except Exception:
                    time.sleep(0.1)
        key = os.path.join(d, "etcd.key")
        with open(key, "w") as f:
            f.write(os.urandom(32).hex())
        endpoints = ",".join(f"http://127.0.0.1:{cp}" for _, cp, _ in members)
        self.replicas = [
            Server("server", "-node", f"r{i}", "-data-dir", os.path.join(d, f"r{i}"),
                   "-etcd-endpoints", endpoints, "-etcd-encryption-key-file", key)
            for i in range(3)
        ]
        r = self.replicas[1]
        self.host, self.port, self.addr = r.host, r.port, r.addr

    def stop(self):
        for r in self.replicas:
            r.stop()
        for p in self.etcd:
            p.kill()
            p.wait()


def _modes():
    import shutil

    # The HA mode needs Debian's etcd (scripts/setup.sh installs it).
    return ["dev", "ha"] if shutil.which("etcd") else ["dev"]


@pytest.fixture(params=_modes())
def server(request):
    if request.param == "dev":
        s = Server("agent", "-dev")
        yield s
        s.stop()
    else:
        with tempfile.TemporaryDirectory() as d:
            c = HaCluster(d)
            yield c
            c.stop()


@pytest.fixture
def acl_server():
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "acl.hcl")
        with open(cfg, "w") as f:
            f.write('acl {\n  enabled = true\n  default_policy = "deny"\n}\n')
        s = Server("server", "-data-dir", os.path.join(d, "data"), "-config-file", cfg)
        yield s
        s.stop()
