"""What a bundle build needs here in place of what the CI machine cannot reach: the test
images (platform-test-debian12 and 13, built with debootstrap) in place of debian:bookworm-slim
and debian:trixie-slim as each release's clean system, an image imported from an empty archive
in place of an app's registry image, and a small archive in place of Ollama's release. Used by
the bundle test (tests/integration) and its bench (bench/bundle_build.py)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELEASES = {"12": "bookworm", "13": "trixie"}
APP_IMAGE = "platform-bundle-test-app:1"
MODELS = ROOT / "molecule" / "ollama" / "standin-models"
BUILD_IMAGES = [arg for n in RELEASES for arg in ("--build-image", f"{n}=platform-test-debian{n}:latest")]

# One host in every group but gpu (NVIDIA's repository is out of reach).
HOSTS = """\
all:
  hosts:
    node: {ansible_connection: local}
  children:
    postgres: {hosts: {node: {}}}
    redis: {hosts: {node: {}}}
    monitoring: {hosts: {node: {}}}
    ollama: {hosts: {node: {}}}
    app: {hosts: {node: {}}}
    edge: {hosts: {node: {}}}
"""


def import_app_image() -> None:
    empty = io.BytesIO()
    tarfile.open(fileobj=empty, mode="w").close()
    subprocess.run(["docker", "import", "-", APP_IMAGE], input=empty.getvalue(), capture_output=True, check=True)


def remove_app_image() -> None:
    subprocess.run(["docker", "rmi", APP_IMAGE], capture_output=True, check=False)


def write_inventory(work: Path) -> Path:
    """The stand-in inventory (and the Ollama archive it names) under `work`."""
    release = work / "ollama-linux-amd64.tgz"
    with tarfile.open(release, "w:gz") as tar:
        info = tarfile.TarInfo("bin/ollama")
        info.size, info.mode = 10, 0o755
        tar.addfile(info, io.BytesIO(b"#!/bin/sh\n"))
    inventory = work / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(HOSTS)
    (inventory / "group_vars" / "all" / "main.yml").write_text(f"""---
ollama_archive_src: {release}
ollama_archive_sha256: ""
ollama_models: ["standin-offline:1b"]
ollama_models_src: {MODELS}
platform_apps:
  - {{name: api, image: "{APP_IMAGE}", port: 8000, healthcheck: {{path: /health}}, route: {{path: /}}}}
""")
    return inventory


def copy_checkout(dest: Path) -> Path:
    """This checkout's files as a site receives them (git's files, no .venv/), at `dest`."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest
