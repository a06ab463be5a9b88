"""A standard-library web app: answers every GET with a greeting and the instance index."""

import http.server
import json
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "app": "stdlib",
                "python": sys.version.split()[0],
                "index": os.environ.get("CF_INSTANCE_INDEX"),
                "greeting": os.environ.get("GREETING"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print("request " + (format % args), flush=True)


host = os.environ.get("CF_INSTANCE_IP") or "0.0.0.0"
port = int(os.environ.get("PORT", "8080"))
print(f"stdlib app listening on {host}:{port}", flush=True)
http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()
