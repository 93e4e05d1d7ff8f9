"""`ingress`: the way in from the host (127.0.0.1:8080). Calls `greeter` through its sidecar
(GREETER_URL), where the service splitter picks the container or the Lambda function."""

import os, socket, urllib.error, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ["PORT"])
HOST = f"{socket.gethostname()}:{PORT}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200
        if self.path == "/health":
            text = "ok"
        else:
            try:
                with urllib.request.urlopen(os.environ["GREETER_URL"], timeout=15) as r:
                    text = f"From {HOST}: {r.read().decode()}"
            except urllib.error.HTTPError as e:
                status = 502
                text = f"From {HOST}: greeter failed: HTTP {e.code}: {e.read().decode()}"
            except Exception as e:
                status, text = 502, f"From {HOST}: greeter failed: {e}"
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
