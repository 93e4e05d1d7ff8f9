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


@pytest.fixture
def server():
    s = Server("agent", "-dev")
    yield s
    s.stop()


@pytest.fixture
def acl_server():
    with tempfile.TemporaryDirectory() as d:
        cfg = os.path.join(d, "acl.hcl")
        with open(cfg, "w") as f:
            f.write('acl {\n  enabled = true\n  default_policy = "deny"\n}\n')
        s = Server("server", "-data-dir", os.path.join(d, "data"), "-config-file", cfg)
        yield s
        s.stop()
