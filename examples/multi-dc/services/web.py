"""`web` in dc1: `/users?user=ann` asks `users` in its own datacenter, `/login?user=ann` asks the
Lambda function `authentication` in dc2; both through its sidecar's upstreams (USERS_URL and
AUTHENTICATION_DC2_URL, set by `lambdamesh up`). The answer says which one answered."""

import json, os, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

PORT = int(os.environ["PORT"])
ROUTES = {
    "/users": os.environ["USERS_URL"],
    "/login": os.environ["AUTHENTICATION_DC2_URL"],
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/health":
            return self.answer(200, b"ok")
        base = ROUTES.get(url.path)
        if base is None:
            return self.answer(404, b"try /users?user=ann or /login?user=ann\n")
        target = f"{base}{url.path}?{url.query}"
        try:
            with urllib.request.urlopen(target, timeout=10) as r:
                inner = json.load(r)
            self.answer(200, json.dumps({"from": "web", "answer": inner}).encode())
        except urllib.error.HTTPError as e:
            self.answer(502, f"{url.path}: HTTP {e.code}: {e.read().decode()[:300]}".encode())
        except OSError as e:
            self.answer(502, f"{url.path}: {e}".encode())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
