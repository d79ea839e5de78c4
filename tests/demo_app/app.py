"""Demo app for the molecule scenarios: a stand-in for a product's API container.

Serves GET /health with JSON that says which connection URLs and secrets it received,
never their values: for each URL its parts without the password, and a SHA-256 of each
secret (the password of a URL included), so a test can compare them with what it set.
It also lists the files in /data, where a pre-deploy command can leave a mark.
With DEMO_FAIL set it prints that message and exits, as a broken release does.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

URL_NAMES = ("DATABASE_URL", "REDIS_URL", "OLLAMA_BASE_URL")
DATA = Path("/data")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def describe_url(value: str) -> dict[str, object]:
    parts = urlsplit(value)
    return {
        "scheme": parts.scheme, "username": parts.username, "host": parts.hostname,
        "port": parts.port, "path": parts.path,
        "password_sha256": digest(unquote(parts.password)) if parts.password else None,
    }


def report() -> dict[str, object]:
    secret_names = [name for name in os.environ.get("DEMO_SECRET_NAMES", "").split(",") if name]
    return {
        "status": "ok",
        "version": os.environ.get("DEMO_VERSION", "unknown"),
        "urls": {name: describe_url(os.environ[name]) for name in URL_NAMES if name in os.environ},
        "secrets_sha256": {name: digest(os.environ[name]) for name in secret_names if name in os.environ},
        "data": sorted(p.name for p in DATA.iterdir()) if DATA.is_dir() else [],
    }


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/health":
            self.send_error(404)
            return
        body = json.dumps(report()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


if __name__ == "__main__":
    if os.environ.get("DEMO_FAIL"):
        sys.exit(f"fatal: {os.environ['DEMO_FAIL']}")
    ThreadingHTTPServer(("0.0.0.0",  # noqa: S104 (a container listens on its own interface)
                         int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
