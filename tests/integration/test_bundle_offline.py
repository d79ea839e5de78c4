"""`installer.py bundle`, really run, and what it builds installed on hosts with no network.

The build resolves each release's packages against Debian's mirror in a container of the
release, as on any machine with internet; the stand-ins for what the CI machine cannot reach
are molecule/resources/bundle_standins.py's.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import threading
import uuid
from pathlib import Path

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

from platformctl import bundle, bundle_build, bundle_plan, manifests
from platformctl import inventory as inventory_module
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
    failed = work.with_name("bundle.failed")
    with open(f"{work}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.is_file():  # one failed build is enough: the other workers do not try again
            pytest.fail(f"the bundle's build failed in another worker: {failed.read_text()}")
        if not unpacked.is_dir():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            try:
                build(work, archive, summary, output)
            except BaseException as error:
                failed.write_text(str(error)[-3000:])
                raise
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


@contextlib.contextmanager
def served_over_https(folder: Path, work: Path):
    """`folder` served over https on the Docker bridge's gateway, where a build container
    reaches this machine, with a certificate of a CA made for the test: (the URL, the CA's
    file, to trust as SSL_CERT_FILE)."""
    config = json.loads(docker("network", "inspect", "bridge").stdout)[0]["IPAM"]["Config"][0]
    # Docker 20.10 leaves the gateway out where it is the subnet's first address, its default.
    gateway = config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    ca_key, ca, key, request, cert = (work / name for name in ("ca.key", "ca.pem", "tls.key", "tls.csr", "tls.pem"))
    openssl = [
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca_key,
         "-out", ca, "-days", "1", "-subj", "/CN=bundle test CA"],
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", request,
         "-subj", f"/CN={gateway}"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1",
         "-extfile", "/dev/stdin"]]
    for args in openssl:
        made = subprocess.run(["openssl", *map(str, args)], input=f"subjectAltName=IP:{gateway}\n", text=True,
                              capture_output=True, check=False)
        assert made.returncode == 0, made.stderr
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((gateway, 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://{gateway}:{server.server_port}", ca
    finally:
        server.shutdown()


@pytest.mark.parametrize("reached", ["local copy", "https"])
def test_a_vendor_repository_is_resolved_into_the_bundle_and_installed_from_it(reached, tmp_path, monkeypatch):
    """NVIDIA's container toolkit on a GPU host that runs apps, as its role's manifest says where
    to fetch it (STAND-IN: molecule/nvidia_container_toolkit/standin's repository, since NVIDIA's
    cannot be reached here), given as the inventory's local copy (nvidia_container_toolkit_repo_src)
    or served over https as NVIDIA serves its own (the key from its URL; apt in the clean image,
    which has no CA certificates, checks the server with the controller's): resolved in Debian
    12's clean system under its pinned key, in the repository the bundle's key signs, and
    installed from it alone on a host with no network."""
    standin = tmp_path / "nvidia"
    version = manifests.role_default("nvidia_container_toolkit", "nvidia_container_toolkit_version")
    made = subprocess.run([sys.executable, str(ROOT / "molecule" / "nvidia_container_toolkit" / "standin" /
                                               "build_repo.py"), "--out", str(standin), "--version", version],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, made.stderr
    with contextlib.ExitStack() as stack:
        if reached == "https":
            url, ca = stack.enter_context(served_over_https(standin, tmp_path))
            monkeypatch.setenv("SSL_CERT_FILE", str(ca))
            settings = (f"nvidia_container_toolkit_repo_url: {url}\n"
                        f"nvidia_container_toolkit_repo_key_url: {url}/gpgkey\n")
        else:
            settings = f"nvidia_container_toolkit_repo_src: {standin}\n"
        installed_from_a_bundle_of(standin, version, tmp_path, settings)


def installed_from_a_bundle_of(standin: Path, version: str, tmp_path: Path, settings: str) -> None:
    inventory = tmp_path / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text("all:\n  hosts:\n    gpu1: {ansible_connection: local}\n  children:\n"
                                         "    app: {hosts: {gpu1: {}}}\n    gpu: {hosts: {gpu1: {}}}\n")
    (inventory / "group_vars" / "all" / "main.yml").write_text(
        f"---\n{settings}"
        f"nvidia_container_toolkit_repo_key_fingerprint: {(standin / 'gpgkey.fingerprint').read_text().strip()}\n")
    whole = bundle_plan.make(inventory_module.load(inventory_module.resolve(str(inventory)), []), ["12"])
    # The toolkit's packages only: the rest of a GPU host's (the NVIDIA driver's DKMS build
    # among them) is the other tests' and the nvidia_driver scenarios'.
    plan = bundle_plan.Plan(packages={"12": {"nvidia": whole.packages["12"]["nvidia"]}}, sources=whole.sources)
    packages = sorted(plan.packages["12"]["nvidia"])
    toolkit = ("nvidia-container-toolkit", "nvidia-container-toolkit-base", "libnvidia-container-tools",
               "libnvidia-container1")
    assert packages == sorted(f"{name}={version}" for name in toolkit)
    work = tmp_path / "bundle"
    work.mkdir()
    job = bundle_build.Build(plan, work, print, dict(arg.split("=", 1) for arg in BUILD_IMAGES[1::2]))
    job.step("packages (Debian 12)", lambda component: job.packages("12", component))
    with bundle.keyring() as ring:
        fingerprint = ring.generate("bundle test")
        (work / "bundle-key.asc").write_bytes(ring.export(fingerprint))
        job.sign_repositories(ring.home, fingerprint)
    names = [package.split("=")[0] for package in packages]
    name = f"platform-bundle-vendor-{uuid.uuid4().hex[:6]}"
    started = docker("run", "-d", "--name", name, "--network", "none", "-v", f"{work}:/bundle:ro",
                     "platform-test-debian12:latest", "sleep", "infinity")
    assert started.returncode == 0, started.stderr
    try:
        installed = subprocess.run(["docker", "exec", name, "sh", "-ec", f"""
            rm -f /etc/apt/sources.list.d/* /etc/apt/sources.list
            mkdir -p /etc/apt/keyrings
            cp /bundle/bundle-key.asc /etc/apt/keyrings/bundle.asc
            echo 'deb [signed-by=/etc/apt/keyrings/bundle.asc] file:/bundle/apt/bookworm ./' \\
              > /etc/apt/sources.list.d/bundle.list
            apt-get update
            DEBIAN_FRONTEND=noninteractive apt-get install -y {' '.join(packages)}
            dpkg-query -W -f '${{Package}}=${{Version}} ${{db:Status-Status}}\\n' {' '.join(names)}
            test -x /usr/bin/nvidia-ctk
            """], capture_output=True, text=True, check=False, timeout=600)
        assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
        assert sorted(line for line in installed.stdout.splitlines() if line.endswith(" installed")) == \
            [f"{package} installed" for package in packages]
    finally:
        docker("rm", "-f", name)
