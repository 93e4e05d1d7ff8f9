"""`name`: answers a random name, and which host answered."""

import json, os, random, socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ["PORT"])
HOST = f"{socket.gethostname()}:{PORT}"
NAMES = ["Jennifer", "Mary", "Ahmed", "Yuki", "Olga", "Kwame", "Lucia", "Wei"]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/health" else json.dumps(
            {"name": random.choice(NAMES), "host": HOST}
        ).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
