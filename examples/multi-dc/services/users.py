"""`users` in dc1: answers a user record, with the datacenter and host that answered."""

import json, os, socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT = int(os.environ["PORT"])
HOST = f"{socket.gethostname()}:{PORT}"
DC = os.environ.get("DATACENTER", "dc1")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/health":
            body = b"ok"
        else:
            user = parse_qs(url.query).get("user", ["anonymous"])[0]
            body = json.dumps({"user": user, "name": user.title(), "datacenter": DC, "host": HOST}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
