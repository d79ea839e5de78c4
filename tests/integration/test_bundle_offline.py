"""`installer.py bundle`, really run, and what it builds installed on hosts with no network.

The build resolves each release's packages against Debian's mirror in a container of the
release, as on any machine with internet; the stand-ins for what the CI machine cannot reach
are molecule/resources/bundle_standins.py's.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid

import pytest
from bundle_standins import (
    APP_IMAGE,
    BUILD_IMAGES,
    RELEASES,
    ROOT,
    copy_checkout,
    import_app_image,
    remove_app_image,
    write_inventory,
)

from platformctl import bundle
from platformctl.bundle_plan import DEBIAN_PYTHON, image_file


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, check=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory, worker_id):
    """A bundle of a one-host inventory (every group but gpu) for Debian 12 and 13:
    (the archive, what `--json` reported, the folder it is unpacked in, the build's output).
    Built once per run: pytest-xdist's workers share the run's folder, and the first to
    come builds it while the others wait."""
    if docker("info").returncode != 0:
        pytest.fail("the bundle test needs the Docker engine (tests/run.sh starts it)")
    run_dir = tmp_path_factory.getbasetemp()
    work = (run_dir.parent if worker_id != "master" else run_dir) / "bundle"
    archive, summary, unpacked, output = (work / "platform.bundle", work / "bundle.json", work / "unpacked",
                                          work / "build.log")
    with open(f"{work}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not unpacked.is_dir():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            build(work, archive, summary, output)
            with tarfile.open(archive) as tar:
                tar.extractall(work / "unpacking", filter="data")
            (work / "unpacking").rename(unpacked)
    return archive, json.loads(summary.read_text()), unpacked, output.read_text()


def build(work, archive, summary, output) -> None:
    import_app_image()
    try:
        inventory = write_inventory(work)
        # The bundle key in the test's own folder, not the user's (~/.config/platformctl).
        env = dict(os.environ, PLATFORMCTL_SECRETS_DIR=str(work / "secrets"))
        proc = subprocess.run([sys.executable, str(ROOT / "installer.py"), "bundle", "--inventory", str(inventory),
                               "--output", str(archive), *BUILD_IMAGES, "--json", str(summary)],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=1200)
    finally:
        remove_app_image()
    sys.stdout.write(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output.write_text(proc.stdout)


def test_the_build_says_what_it_holds_and_the_bundle_verifies_with_its_fingerprint(built):
    archive, summary, unpacked, stdout = built
    components = {c["name"]: c for c in summary["components"]}
    assert set(components) == {"packages (Debian 12)", "packages (Debian 13)", "controller wheels", "app images",
                               "ollama release", "ollama models"}
    assert all(c["files"] > 0 and c["bytes"] > 0 for c in components.values()), components
    assert f"Bundle key fingerprint: {summary['fingerprint']}" in stdout
    proc = subprocess.run([sys.executable, str(ROOT / "installer.py"), "bundle", "verify", str(archive),
                           "--fingerprint", summary["fingerprint"]], cwd=ROOT, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    # Only the listed model, with every blob its manifest names.
    model = unpacked / "models" / "manifests" / "registry.ollama.ai" / "library" / "standin-offline" / "1b"
    digests = [layer["digest"].replace(":", "-") for layer in json.loads(model.read_text())["layers"]]
    assert sorted(p.name for p in (unpacked / "models" / "blobs").iterdir()) == sorted(digests)
    # The app's image as `docker save` wrote it, tagged as the inventory names it.
    with tarfile.open(unpacked / "images" / image_file(APP_IMAGE)) as saved:
        assert json.load(saved.extractfile("manifest.json"))[0]["RepoTags"] == [APP_IMAGE]
    assert (unpacked / "ollama" / "ollama-linux-amd64.tgz").is_file()


@pytest.mark.parametrize("release", list(RELEASES))
def test_a_host_with_no_network_installs_every_package_from_the_bundle(built, release, tmp_path):
    """In a container with no network at all: the repository's signature refused under
    another key, then every package of the plan installed with only the bundle's repository,
    and installer.py's requirements resolved from the bundle's wheels for that release's Python."""
    unpacked = built[2]
    other_key = tmp_path / "other.asc"
    with bundle.keyring() as ring:
        other_key.write_bytes(ring.export(ring.generate("another key")))
    plan = json.loads((unpacked / "bundle.json").read_text())["plan"]
    packages = sorted(plan["packages"][release]["debian"])
    assert {"postgresql-client-" + ("15" if release == "12" else "17"), "redis-server", "nginx",
            f"python{DEBIAN_PYTHON[release]}-venv"} <= set(packages)
    name = f"platform-bundle-offline-{release}-{uuid.uuid4().hex[:6]}"
    started = docker("run", "-d", "--name", name, "--network", "none", "-v", f"{unpacked}:/bundle:ro",
                     f"platform-test-debian{release}:latest", "sleep", "infinity")
    assert started.returncode == 0, started.stderr
    try:
        def run(script: str) -> subprocess.CompletedProcess:
            return subprocess.run(["docker", "exec", name, "sh", "-ec", script], capture_output=True, text=True,
                                  check=False, timeout=900)

        source = f"deb [signed-by=/etc/apt/keyrings/bundle.asc] file:/bundle/apt/{RELEASES[release]} ./"
        setup = run(f"""
            mkdir -p /root/apt-sources /etc/apt/keyrings
            mv /etc/apt/sources.list.d/* /root/apt-sources/ 2>/dev/null || true
            mv /etc/apt/sources.list /root/apt-sources/ 2>/dev/null || true
            echo '{source}' > /etc/apt/sources.list.d/bundle.list
            """)
        assert setup.returncode == 0, setup.stderr
        assert docker("cp", str(other_key), f"{name}:/etc/apt/keyrings/bundle.asc").returncode == 0
        refused = run("apt-get update")
        assert refused.returncode != 0 and "is not signed" in refused.stderr, refused.stdout + refused.stderr
        installed = run(f"""
            cp /bundle/bundle-key.asc /etc/apt/keyrings/bundle.asc
            apt-get update
            DEBIAN_FRONTEND=noninteractive apt-get install -y {' '.join(packages)} >/tmp/install.log 2>&1 \
              || {{ tail -30 /tmp/install.log; exit 1; }}
            dpkg-query -W -f '${{db:Status-Status}} ${{Package}}\\n' {' '.join(packages)}
            python3 -m venv /tmp/venv
            /tmp/venv/bin/pip install --dry-run --quiet --no-index --require-hashes \
              --find-links /bundle/wheels/python{DEBIAN_PYTHON[release]} -r /bundle/wheels/requirements.txt
            """)
        assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
        statuses = dict(reversed(line.split()) for line in installed.stdout.splitlines() if line.startswith(
            ("installed ", "not-installed ", "config-files ", "half-")))
        assert {package: statuses.get(package) for package in packages} == dict.fromkeys(packages, "installed")
    finally:
        docker("rm", "-f", name)


@pytest.mark.parametrize("release", list(RELEASES))
def test_a_controller_with_no_network_and_no_venv_support_starts_from_the_bundle(built, release, tmp_path):
    """A site's controller as root, with Debian's Python but not python3-venv and no network:
    installer.py installs venv support from the bundle's repository (once its key is the
    pinned one), builds its environment from the bundle's wheels, then checks the bundle."""
    archive, summary = built[0], built[1]
    checkout = copy_checkout(tmp_path / "installer")
    name = f"platform-bundle-controller-{release}-{uuid.uuid4().hex[:6]}"
    started = docker("run", "-d", "--name", name, "--network", "none", "-v", f"{checkout}:/installer", "-v",
                     f"{archive}:/platform.bundle:ro", f"platform-test-debian{release}:latest", "sleep", "infinity")
    assert started.returncode == 0, started.stderr
    try:
        def verify(fingerprint: str) -> subprocess.CompletedProcess:
            return subprocess.run(["docker", "exec", "-w", "/installer", name, "python3", "installer.py", "bundle",
                                   "verify", "/platform.bundle", "--fingerprint", fingerprint],
                                  capture_output=True, text=True, check=False, timeout=900)

        assert subprocess.run(["docker", "exec", name, "python3", "-c", "import ensurepip"],
                              capture_output=True, check=False).returncode != 0, "the image has venv support already"
        wrong = verify("0123456789ABCDEF0123456789ABCDEF01234567")
        assert wrong.returncode == 4 and "its key is not the one --fingerprint gives" in wrong.stderr, wrong.stderr
        checked = verify(summary["fingerprint"])
        assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr[-3000:]
        assert f"signed by {summary['fingerprint']}" in checked.stdout
        assert "from the wheels of /platform.bundle" in checked.stderr
    finally:
        docker("rm", "-f", name)
