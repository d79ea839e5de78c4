#!/usr/bin/env python3
"""STAND-IN for the `ollama` binary, for tests only.

The CI machine cannot download Ollama, so the ollama role's scenario installs a
release-shaped archive whose bin/ollama is this script. It implements only what the
role uses:

    ollama --version                 "ollama version is X" (or the client-only warning)
    ollama serve                     on OLLAMA_HOST, models kept in OLLAMA_MODELS:
        GET    /api/version          {"version": X}
        GET    /api/tags             the models present
        POST   /api/pull             writes a tiny fake model, streams progress lines
        DELETE /api/delete           removes a model

Every request is logged to stderr (the journal) as "<METHOD> <path> [model]".
Models are stored the way Ollama stores them: manifests/<registry>/<namespace>/<name>/<tag>
plus blobs/sha256-<digest>.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VERSION = "@VERSION@"
REGISTRY = "registry.ollama.ai"
DEFAULT_PORT = 11434


def listen_address() -> tuple[str, int]:
    value = os.environ.get("OLLAMA_HOST", "").strip()
    for scheme in ("http://", "https://"):
        value = value.removeprefix(scheme)
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "")
    return host or "127.0.0.1", int(port or DEFAULT_PORT)


def models_dir() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models")


def split_name(model: str) -> tuple[str, str, str]:
    name, _, tag = model.partition(":")
    namespace, _, name = name.rpartition("/")
    return namespace or "library", name, tag or "latest"


def manifest_path(model: str) -> Path:
    namespace, name, tag = split_name(model)
    return models_dir() / "manifests" / REGISTRY / namespace / name / tag


def present_models() -> list[dict]:
    root = models_dir() / "manifests" / REGISTRY
    models = []
    for manifest in sorted(root.glob("*/*/*")) if root.is_dir() else []:
        namespace, name, tag = manifest.relative_to(root).parts
        full = f"{name}:{tag}" if namespace == "library" else f"{namespace}/{name}:{tag}"
        layers = json.loads(manifest.read_text()).get("layers", [])
        modified = datetime.fromtimestamp(manifest.stat().st_mtime, timezone.utc).isoformat()
        models.append({
            "name": full, "model": full, "modified_at": modified,
            "size": sum(layer["size"] for layer in layers),
            "digest": hashlib.sha256(manifest.read_bytes()).hexdigest(),
            "details": {"format": "stand-in"},
        })
    return models


def write_model(model: str) -> list[dict]:
    """Stores a tiny fake model; returns the progress lines a real pull streams."""
    content = f"stand-in weights of {model}\n".encode()
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    blobs = models_dir() / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest.replace(":", "-")).write_bytes(content)
    manifest = manifest_path(model)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": len(content)}
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [layer]}))
    half = len(content) // 2
    return [
        {"status": "pulling manifest"},
        {"status": f"pulling {digest[7:19]}", "digest": digest, "total": len(content), "completed": half},
        {"status": f"pulling {digest[7:19]}", "digest": digest, "total": len(content), "completed": len(content)},
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def log(self, model: str = "") -> None:
        sys.stderr.write(f"{self.command} {self.path} {model}".rstrip() + "\n")
        sys.stderr.flush()

    def body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def reply(self, status: int, payload: dict | None = None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.log()
        if self.path == "/api/version":
            self.reply(200, {"version": VERSION})
        elif self.path == "/api/tags":
            self.reply(200, {"models": present_models()})
        elif self.path == "/":
            self.reply(200, {"status": "Ollama is running"})
        else:
            self.reply(404, {"error": "not found"})

    def model_request(self, path: str) -> tuple[dict, str] | None:
        """Reads a request naming a model; answers 404 itself when the path is not `path`."""
        request = self.body()
        model = request.get("model") or request.get("name") or ""
        self.log(model)
        if self.path != path:
            self.reply(404, {"error": "not found"})
            return None
        if not model:
            self.reply(400, {"error": "model is required"})
            return None
        return request, model

    def do_POST(self) -> None:
        parsed = self.model_request("/api/pull")
        if parsed is None:
            return
        request, model = parsed
        progress = write_model(model)
        if request.get("stream", True) is False:
            self.reply(200, progress[-1])
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in progress:
            chunk = json.dumps(line).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def do_DELETE(self) -> None:
        parsed = self.model_request("/api/delete")
        if parsed is None:
            return
        _, model = parsed
        manifest = manifest_path(model)
        if not manifest.is_file():
            self.reply(404, {"error": f"model '{model}' not found"})
            return
        manifest.unlink()
        self.reply(200)


def client_version() -> int:
    host, port = listen_address()
    if host == "0.0.0.0":  # noqa: S104 - the client's reading of a wildcard listen address
        host = "127.0.0.1"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/api/version", timeout=3) as answer:
            print(f"ollama version is {json.load(answer)['version']}")
    except (OSError, urllib.error.URLError):
        print("Warning: could not connect to a running Ollama instance")
        print(f"Warning: client version is {VERSION}")
    return 0


def take_the_binary_name() -> None:
    """Show as `ollama` in process lists (ps, ss -p), as the real binary does: the installer's
    preflight tells our own service's port from a foreign one by that name."""
    pr_set_name = 15
    ctypes.CDLL(None).prctl(pr_set_name, b"ollama", 0, 0, 0)


def serve() -> int:
    take_the_binary_name()
    host, port = listen_address()
    models_dir().mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer((host, port), Api)
    sys.stderr.write(f"stand-in ollama {VERSION} listening on {host}:{port}, models in {models_dir()}\n")
    sys.stderr.flush()
    server.serve_forever()
    return 0


def main(argv: list[str]) -> int:
    if argv in (["--version"], ["-v"]):
        return client_version()
    if argv == ["serve"]:
        return serve()
    sys.stderr.write(f"ollama stand-in: unsupported command {argv}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
