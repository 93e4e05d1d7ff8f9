"""`greeter` (the container version): `From <host>: <greeting> (<host>) <name> (<host>)`, with
the name and the greeting fetched through its sidecar (NAME_URL, GREETING_URL: set by `up`
from the sidecar's upstreams)."""

import json, os, socket, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ["PORT"])
HOST = f"{socket.gethostname()}:{PORT}"


def fetch(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200
        if self.path == "/health":
            text = "ok"
        else:
            try:
                g = fetch(os.environ["GREETING_URL"])
                n = fetch(os.environ["NAME_URL"])
                text = f"From {HOST}: {g['greeting']} ({g['host']}) {n['name']} ({n['host']})"
            except Exception as e:  # say which call failed and how
                status, text = 502, f"From {HOST}: error: {e}"
        body = text.encode()
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
