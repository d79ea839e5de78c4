"""Demo app for the molecule scenarios: a stand-in for a product's API container.

Serves GET /health with JSON that says which connection URLs and secrets it received,
never their values: for each URL its parts without the password, and a SHA-256 of each
secret (the password of a URL included), so a test can compare them with what it set.
It also lists the files in /data, where a pre-deploy command can leave a mark. GET /now
answers a fresh number each time (what a cache must keep), POST answers how many bytes it
received, and a WebSocket upgrade on any path gets the opening handshake. GET /live answers
200 until a POST /sick, then 500, as a hung process would (the liveness watcher's test).
With DEMO_PAGE set, GET / answers an HTML page holding it: a front end's index.
With DEMO_FAIL set it prints that message and exits, as a broken release does.

GET /work does what a real app does with the URLs it received, with the clients real apps
use: a SQL round trip through DATABASE_URL (create its table, insert, read back), a Redis
SET and GET through REDIS_URL's ACL user, and Ollama's model list from OLLAMA_BASE_URL.
Each result says ok or the client's error, so a test asserts what the app could do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.request
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


def postgres_round_trip(url: str) -> dict[str, object]:
    import psycopg2

    note = secrets.token_hex(8)
    connection = psycopg2.connect(url, connect_timeout=5)
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE IF NOT EXISTS demo_work (id serial PRIMARY KEY, note text NOT NULL)")
            cursor.execute("INSERT INTO demo_work (note) VALUES (%s) RETURNING id", (note,))
            row = cursor.fetchone()[0]
            cursor.execute("SELECT note, current_user FROM demo_work, current_user WHERE id = %s", (row,))
            read, user = cursor.fetchone()
    finally:
        connection.close()
    return {"ok": read == note, "row": row, "user": user}


def redis_round_trip(url: str) -> dict[str, object]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    key, value = f"demo:{secrets.token_hex(4)}", secrets.token_hex(8)
    client.set(key, value, ex=60)
    read = client.get(key)
    user = client.acl_whoami()
    return {"ok": read == value.encode(), "user": user.decode() if isinstance(user, bytes) else user}


def ollama_models(url: str) -> dict[str, object]:
    with urllib.request.urlopen(f"{url.rstrip('/')}/api/tags", timeout=5) as answer:  # noqa: S310 (the app's own URL)
        models = [model["name"] for model in json.load(answer)["models"]]
    return {"ok": True, "models": sorted(models)}


WORK = {"DATABASE_URL": postgres_round_trip, "REDIS_URL": redis_round_trip, "OLLAMA_BASE_URL": ollama_models}


def work() -> dict[str, object]:
    done: dict[str, object] = {}
    for name, job in WORK.items():
        if name in os.environ:
            try:
                done[name] = job(os.environ[name])
            except Exception as err:  # each failure, whatever its kind, is the result to report
                done[name] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
    return done


# RFC 6455's constant for the handshake's Sec-WebSocket-Accept.
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sick = False

    def do_GET(self) -> None:
        route = self.path.split("?")[0]
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self.accept_websocket()
            return
        if route == "/" and os.environ.get("DEMO_PAGE"):
            self.answer(200, f"<!doctype html><title>{os.environ['DEMO_PAGE']}</title>".encode(), "text/html")
            return
        if route == "/live":
            self.answer(500 if Handler.sick else 200, json.dumps({"live": not Handler.sick}).encode())
            return
        if route not in ("/health", "/work", "/now"):
            self.send_error(404)
            return
        answers = {"/health": report, "/work": work, "/now": lambda: {"ns": time.time_ns()}}
        self.answer(200, json.dumps(answers[route]()).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        if self.path == "/sick":
            Handler.sick = True
        self.answer(200, json.dumps({"received": len(self.rfile.read(length))}).encode())

    def answer(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def accept_websocket(self) -> None:
        """The opening handshake, then a close frame: enough to prove the upgrade got here."""
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()  # noqa: S324 (RFC 6455)
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.write(b"\x88\x00")
        self.close_connection = True


if __name__ == "__main__":
    if os.environ.get("DEMO_FAIL"):
        sys.exit(f"fatal: {os.environ['DEMO_FAIL']}")
    ThreadingHTTPServer(("0.0.0.0",  # noqa: S104 (a container listens on its own interface)
                         int(os.environ.get("PORT", "8000"))), Handler).serve_forever()
