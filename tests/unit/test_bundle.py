"""The offline bundle's signed manifest and `bundle verify`'s findings (platformctl/bundle.py),
with real gpg and real tar archives."""

from __future__ import annotations

import http.server
import io
import json
import re
import tarfile
import threading
from pathlib import Path

import pytest

from platformctl import bundle, bundle_build, bundle_plan
from platformctl.cli import main
from platformctl.errors import BadInput, InstallerError

FILES = {"apt/debian12/pool/redis-server_7.0.15-1_amd64.deb": b"a package\n" * 1000,
         "images/platform-demo-app_1.tar": b"an image\n",
         "ollama/ollama-linux-amd64.tgz": b"a release\n"}


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory):
    """A bundle key, made as the build makes one: (its GnuPG home, its fingerprint)."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    yield home, bundle.Keyring(home).generate("Platform bundle test")
    bundle.stop_agent(home)


def built(folder: Path, signing_key, files: dict[str, bytes] = FILES) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    bundle.sign_folder(folder, *signing_key)
    archive = folder.parent / f"{folder.name}.tar"
    bundle.pack(folder, archive)
    return archive


@pytest.fixture
def folder(tmp_path):
    made = tmp_path / "bundle"
    made.mkdir()
    return made


def repacked(archive: Path, change) -> Path:
    """The archive with its members passed through change(name, data) -> [(name, data), ...]."""
    out = archive.with_name("changed.tar")
    with tarfile.open(archive) as source, tarfile.open(out, "w") as target:
        for member in source:
            for name, data in change(member.name, source.extractfile(member).read()):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                target.addfile(info, io.BytesIO(data))
    return out


def test_a_bundle_as_built_verifies_against_its_pinned_key(folder, signing_key):
    verdict = bundle.verify(built(folder, signing_key), pinned=signing_key[1])
    assert verdict.problems == []
    assert (verdict.fingerprint, verdict.pinned, verdict.files) == (signing_key[1], True, 3)
    assert verdict.size == sum(len(data) for data in FILES.values())


def test_an_altered_file_is_named_with_both_sums(folder, signing_key):
    name = "images/platform-demo-app_1.tar"
    archive = repacked(built(folder, signing_key),
                       lambda n, data: [(n, b"another image\n" if n == name else data)])
    problems = bundle.verify(archive, pinned=signing_key[1]).problems
    assert len(problems) == 1 and problems[0].startswith(f"{name}: altered (sha256 "), problems
    assert bundle.digest(io.BytesIO(FILES[name])).sha256 in problems[0]


def test_a_missing_file_and_one_added_are_named(folder, signing_key):
    gone = "ollama/ollama-linux-amd64.tgz"
    archive = repacked(built(folder, signing_key), lambda n, data: [] if n == gone else (
        [(n, data), ("ollama/extra.bin", b"x")] if n == bundle.MANIFEST else [(n, data)]))
    assert bundle.verify(archive).problems == [f"{gone}: missing", "ollama/extra.bin: not in the manifest"]


def test_a_manifest_changed_to_match_an_altered_file_fails_its_signature(folder, signing_key):
    name = "images/platform-demo-app_1.tar"
    forged = b"another image\n"

    def forge(member, data):
        if member == bundle.MANIFEST:
            manifest = json.loads(data)
            entry = bundle.digest(io.BytesIO(forged))
            manifest["files"][name] = {"sha256": entry.sha256, "size": entry.size}
            data = json.dumps(manifest).encode()
        return [(member, forged if member == name else data)]

    problems = bundle.verify(repacked(built(folder, signing_key), forge)).problems
    assert problems == [f"{bundle.MANIFEST}: its signature does not verify with the bundle's key "
                        "(the manifest was changed after the build)"]


def test_a_bundle_signed_by_another_key_is_refused_when_one_is_pinned(folder, signing_key, tmp_path):
    other_home = tmp_path / "other"
    other_home.mkdir(mode=0o700)
    other = bundle.Keyring(other_home).generate("Someone else")
    archive = built(folder, (other_home, other))
    bundle.stop_agent(other_home)
    assert bundle.verify(archive).problems == []  # unpinned: consistent, but only the pin says whose
    assert bundle.verify(archive, pinned=signing_key[1]).problems == [
        f"{bundle.PUBLIC_KEY}: the bundle is signed by {other}, not the pinned key {signing_key[1]}"]


def test_paths_outside_the_bundle_and_repeated_names_are_refused(folder, signing_key):
    name = "images/platform-demo-app_1.tar"
    archive = repacked(built(folder, signing_key), lambda n, data: (
        [(n, data), (n, b"second copy"), ("../etc/cron.d/x", b"")] if n == name else [(n, data)]))
    assert bundle.verify(archive).problems == [
        f"{name}: twice in the archive (unpacking would keep the second)", "../etc/cron.d/x: a path outside the bundle"]


def test_what_is_not_a_bundle_is_bad_input(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        bundle.verify(tmp_path / "absent.tar")
    (tmp_path / "text.tar").write_text("not a tar archive")
    with pytest.raises(BadInput, match="not a bundle"):
        bundle.verify(tmp_path / "text.tar")
    empty = tmp_path / "empty.tar"
    tarfile.open(empty, "w").close()
    assert bundle.verify(empty).problems == [
        "manifest.json, manifest.json.asc, bundle-key.asc: missing, so nothing in the bundle can be trusted"]


@pytest.mark.parametrize(("given", "expected"), [
    ("b53a e77b adb6 30a6 8304  6005 963f a277 1045 8545", "B53AE77BADB630A683046005963FA27710458545")])
def test_fingerprints_are_read_as_people_write_them(given, expected):
    assert bundle.normal_fingerprint(given) == expected
    with pytest.raises(BadInput, match="40 hex digits"):
        bundle.normal_fingerprint("B53AE77B")


def test_installer_bundle_verify_prints_what_it_checked_and_exits_0(capsys, folder, signing_key):
    archive = built(folder, signing_key)
    code = main(["bundle", "verify", str(archive), "--fingerprint", signing_key[1].lower()])
    out = capsys.readouterr().out
    assert code == 0
    assert f"3 files, 0.0 MB, as the manifest lists them; signed by {signing_key[1]}" in out
    assert "no --fingerprint given" not in out
    assert main(["bundle", "verify", str(archive)]) == 0
    assert "compare the key above with the one the build printed" in capsys.readouterr().out


def test_installer_bundle_verify_names_each_problem_and_exits_4(capsys, folder, signing_key):
    name = "images/platform-demo-app_1.tar"
    archive = repacked(built(folder, signing_key), lambda n, data: [] if n == name else [(n, data)])
    assert main(["bundle", "verify", str(archive)]) == 4
    assert capsys.readouterr().err.strip() == f"error: {archive}: {name}: missing"


@pytest.mark.parametrize(("argv", "expected"), [
    (["bundle", "-i", "local"], "bundle needs --output FILE, the archive to write"),
    (["bundle", "check", "x.tar"], "`installer.py bundle verify FILE [--fingerprint FPR]` checks one"),
    (["bundle", "--output", "x.tar"], "the following arguments are required: -i/--inventory"),
    (["bundle", "verify", "x.tar", "--output", "y.tar"], "--output goes with bundle (the build)"),
    (["install", "-i", "local", "--release", "12"], "--release goes with bundle (the build)"),
    (["bundle", "-i", "local", "--output", "x.tar", "--release", "12", "--build-image", "13=debian:trixie"],
     "--build-image 13=debian:trixie: expected N=IMAGE with N one of the bundle's releases (12)"),
    (["bundle", "-i", "local", "--output", "x.tar", "--release", "11"], "--release 11: expected one of 12, 13"),
    (["install", "-i", "local", "--model-registry", "https://mirror.example"],
     "--model-registry goes with bundle (the build)"),
    (["bundle", "-i", "local", "--output", "x.tar", "--release", "12", "--model-registry", "mirror.example"],
     "--model-registry mirror.example: expected a URL (https://HOST)"),
    (["check", "-i", "local", "--fingerprint", "AB"], "--fingerprint goes with bundle verify and --bundle"),
    (["install", "-i", "local", "--bundle", "x.tar"], "--bundle needs --fingerprint FPR"),
    (["backup", "-i", "local", "--bundle", "x.tar", "--fingerprint", "AB"],
     "--bundle goes with install, check, verify, preflight"),
    (["bundle", "verify", "x.tar", "--fingerprint", "AB"], "--fingerprint 'AB': expected the bundle key's 40 hex"),
])
def test_bundle_command_lines_that_cannot_work_exit_4(capsys, argv, expected):
    assert main(argv) == 4
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and expected in err, err


# --- installing from a bundle (--bundle) ---------------------------------------------------------

REPOSITORY = {"apt/bookworm/redis-server_7.0.15-1_amd64.deb": b"a package\n" * 100,
              "apt/bookworm/Packages": b"Package: redis-server\n", "apt/bookworm/InRelease": b"signed\n",
              "images/platform-demo-app_1.tar": b"an image\n", "ollama/ollama-linux-amd64.tgz": b"a release\n",
              "models/manifests/registry.ollama.ai/library/m/1b": b"{}", "bundle.json": json.dumps({
                  "releases": ["12"], "plan": {"packages": {"12": {"debian": {"redis-server": ["redis"]}}},
                                              "images": {"platform-demo-app:1": ""},
                                              "ollama_archive": {"name": "ollama-linux-amd64.tgz"},
                                              "ollama_models": ["m:1b"], "ollama_models_src": ""}}).encode()}


def test_a_bundle_is_unpacked_once_checked_with_the_settings_that_point_a_run_at_it(folder, signing_key, tmp_path):
    archive = built(folder, signing_key, REPOSITORY)
    root = tmp_path / "bundles"
    unpacked = bundle.unpacked(archive, signing_key[1], root)
    assert (unpacked / "apt" / "bookworm" / "Packages").read_bytes() == REPOSITORY["apt/bookworm/Packages"]
    # The release's repository as one archive for the hosts, the same bytes whenever it is made.
    first = (unpacked / "apt" / "bookworm.tar").read_bytes()
    bundle.repository_archive(unpacked / "apt" / "bookworm", tmp_path / "again.tar")
    assert (tmp_path / "again.tar").read_bytes() == first
    with tarfile.open(unpacked / "apt" / "bookworm.tar") as tar:
        assert sorted(tar.getnames()) == ["InRelease", "Packages", "redis-server_7.0.15-1_amd64.deb"]
    assert bundle.unpacked(archive, signing_key[1], root) == unpacked
    assert [p.name for p in root.iterdir()] == [unpacked.name]
    settings = bundle.install_settings(unpacked, signing_key[1])
    assert settings == {
        "platform_bundle_dir": str(unpacked), "platform_bundle_releases": ["12"],
        "platform_bundle_fingerprint": signing_key[1],
        "platform_bundle_images": {"platform-demo-app:1": str(unpacked / "images" / "platform-demo-app_1.tar")},
        "ollama_archive_src": str(unpacked / "ollama" / "ollama-linux-amd64.tgz"),
        "ollama_models_src": str(unpacked / "models")}


def test_a_bundle_that_fails_its_check_is_never_unpacked(folder, signing_key, tmp_path):
    archive = repacked(built(folder, signing_key, REPOSITORY),
                       lambda n, data: [(n, b"tampered" if n == "apt/bookworm/Packages" else data)])
    with pytest.raises(BadInput) as refused:
        bundle.unpacked(archive, signing_key[1], tmp_path / "bundles")
    assert refused.value.messages[0].startswith(f"--bundle {archive}: apt/bookworm/Packages: altered")
    assert not (tmp_path / "bundles").exists()


def test_what_the_install_needs_and_the_bundle_lacks_is_named():
    from platformctl.bundle_plan import Plan, missing

    carried = json.loads(REPOSITORY["bundle.json"])["plan"]
    needed = Plan(packages={"12": {"debian": {"redis-server": ["redis"]}}}, images={"platform-demo-app:1": ""},
                  ollama_archive={"name": "ollama-linux-amd64.tgz"}, ollama_models=["m:1b"])
    assert missing(needed, carried) == []
    needed.packages["12"]["debian"]["htop"] = ["common"]
    needed.packages["12"]["pgdg"] = {"postgresql-17": ["postgresql"]}
    needed.images["acme/api:2"] = ""
    needed.ollama_models.append("qwen2:0.5b")
    assert missing(needed, carried) == ["Debian 12: the packages htop",
                                        "Debian 12: the packages postgresql-17 (from the pgdg repository)",
                                        "the image acme/api:2", "the model qwen2:0.5b"]


def test_a_host_whose_release_the_bundle_lacks_stops_preflight():
    from platformctl import hostchecks

    probe = {"os": "Debian 13", "os_version": "13.1", "python": "3.13", "uid": "0"}
    bundled = hostchecks.Context({"platform_bundle_dir": "/b", "platform_bundle_releases": ["12"]}, [], {})
    findings = [f for f in hostchecks._system(probe, bundled) if f[0] == "offline bundle"]
    assert findings == [("offline bundle", "Debian 13; the bundle carries packages for Debian 12",
                         "build the bundle for this host's release too (installer.py bundle --release 13)", True)]
    assert not [f for f in hostchecks._system(probe, hostchecks.Context({}, [], {})) if f[0] == "offline bundle"]


def test_one_key_signs_every_bundle_built_on_a_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("PLATFORMCTL_SECRETS_DIR", str(tmp_path))
    home = bundle.signing_home()
    assert home == tmp_path / "bundle-key" and home.stat().st_mode & 0o777 == 0o700
    try:
        made, first = bundle.signing_key(bundle.Keyring(home))
        again, second = bundle.signing_key(bundle.Keyring(bundle.signing_home()))
    finally:
        bundle.stop_agent(home)
    assert (first, second) == (True, False) and again == made and bundle.FINGERPRINT.match(made)


# --- a vendor's repository in the build ----------------------------------------------------------

def vendor_plan(local: Path, fingerprint: str) -> bundle_plan.Plan:
    toolkit = {"nvidia-container-toolkit=1.17.8-1": ["nvidia_container_toolkit"]}
    return bundle_plan.Plan(packages={"12": {"nvidia": toolkit}},
                            sources={"12": {"nvidia": {"uri": "https://nvidia.example/deb/$(ARCH)", "suite": "/",
                                                       "key_url": "https://nvidia.example/gpgkey",
                                                       "key_fingerprint": fingerprint, "local": str(local)}}})


@pytest.fixture
def local(signing_key, tmp_path):
    """A local copy of a vendor repository: its folder, with the test key as its `gpgkey`."""
    copy = tmp_path / "nvidia"
    copy.mkdir()
    (copy / "gpgkey").write_bytes(bundle.Keyring(signing_key[0]).export(signing_key[1]))
    (tmp_path / "vendor").mkdir()
    return copy


def test_a_vendor_repository_is_added_to_the_build_under_its_pinned_key(signing_key, local, tmp_path):
    spaced = " ".join(signing_key[1][n:n + 4] for n in range(0, 40, 4)).lower()
    job = bundle_build.Build(vendor_plan(local, spaced), tmp_path / "work", lambda line: None, {})
    mounts = job.vendor_sources("12", tmp_path / "vendor")
    assert mounts == ["-v", f"{tmp_path / 'vendor'}:/vendor:ro", "-v", f"{local}:/vendor-repositories/nvidia:ro"]
    assert (tmp_path / "vendor" / "nvidia.sources").read_text() == (
        "Types: deb\nURIs: copy:/vendor-repositories/nvidia\nSuites: /\nSigned-By: /vendor/nvidia.asc\n")
    assert (tmp_path / "vendor" / "nvidia.asc").read_bytes() == (local / "gpgkey").read_bytes()


def test_a_vendor_key_that_is_not_the_pinned_one_stops_the_build(signing_key, local, tmp_path):
    job = bundle_build.Build(vendor_plan(local, "C95B321B61E88C1809C4F759DDCAE044F796ECB0"), tmp_path / "work",
                             lambda line: None, {})
    with pytest.raises(InstallerError) as raised:
        job.vendor_sources("12", tmp_path / "vendor")
    assert str(raised.value) == (f"the nvidia repository's key has the fingerprint {signing_key[1]}, not the pinned "
                                 "C95B321B61E88C1809C4F759DDCAE044F796ECB0: the packages would not be the vendor's")
    assert not (tmp_path / "vendor" / "nvidia.sources").exists()


# --- models from a registry --------------------------------------------------------------------

STORE = Path(__file__).resolve().parents[2] / "molecule" / "ollama" / "standin-models"


@pytest.fixture
def registry():
    """STAND-IN for Ollama's registry (no registry is reachable here): the stand-in model's
    store served as the OCI distribution API serves it (/v2/NAME/manifests/TAG and
    /v2/NAME/blobs/DIGEST), on a local port. `served` may replace a path's bytes (or give
    (bytes, a longer Content-Length): a transfer cut short)."""
    served: dict[str, bytes] = {}
    asked: list[tuple[str, str]] = []

    class Registry(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append((self.path, self.headers.get("Accept", "")))
            found = re.fullmatch(r"/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)", self.path)
            file = None
            if found and found["kind"] == "manifests":
                file = STORE / "manifests" / "registry.ollama.ai" / found["name"] / found["ref"]
            elif found:
                file = STORE / "blobs" / found["ref"].replace(":", "-")
            data = served.get(self.path) or (file.read_bytes() if file is not None and file.is_file() else None)
            if data is None:
                self.send_error(404)
                return
            data, length = data if isinstance(data, tuple) else (data, len(data))
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", served, asked
    server.shutdown()


def pulled(tmp_path, url, models) -> tuple[bundle_build.Build, Path]:
    plan = bundle_plan.Plan(ollama_models=models)
    job = bundle_build.Build(plan, tmp_path, lambda line: None, {}, model_registry=url)
    job.step("ollama models", job.models)
    return job, tmp_path / "models"


def test_a_model_is_pulled_from_the_registry_into_ollamas_store_layout(registry, tmp_path):
    url, _, asked = registry
    job, models = pulled(tmp_path, url, ["standin-offline:1b"])
    files = sorted(str(p.relative_to(models)) for p in models.rglob("*") if p.is_file())
    assert files == sorted(str(p.relative_to(STORE)) for p in STORE.rglob("*") if p.is_file())
    assert all((models / name).read_bytes() == (STORE / name).read_bytes() for name in files)
    assert asked[0] == ("/v2/library/standin-offline/manifests/1b", bundle_build.MODEL_MANIFEST_TYPE)
    assert job.components[0].files == sorted(models / name for name in files)


def test_a_blob_that_is_not_the_one_the_manifest_names_stops_the_build(registry, tmp_path):
    url, served, _ = registry
    manifest = (STORE / bundle_build.model_manifest("standin-offline:1b")).read_bytes()
    digest = bundle_build.manifest_digests(manifest)[-1]
    served[f"/v2/library/standin-offline/blobs/{digest}"] = b"another model\n"
    with pytest.raises(InstallerError) as raised:
        pulled(tmp_path, url, ["standin-offline:1b"])
    assert f"ollama_models: standin-offline:1b: the blob {digest} from {url} has the sha256 " in str(raised.value)
    assert not list((tmp_path / "models").rglob("sha256-*"))


def test_a_model_the_registry_lacks_is_named(registry, tmp_path):
    url, _, _ = registry
    with pytest.raises(BadInput) as raised:
        pulled(tmp_path, url, ["standin-offline:70b"])
    assert str(raised.value) == (f"ollama_models: standin-offline:70b: the registry has no such model "
                                 f"({url}/v2/library/standin-offline/manifests/70b: 404); check its name and tag")


def test_a_second_build_with_the_same_key_waits_for_the_first_and_says_so(tmp_path):
    said, order = [], []

    def second_build():
        with bundle.signing_turn(tmp_path, said.append):
            order.append("second")

    with bundle.signing_turn(tmp_path, said.append):
        second = threading.Thread(target=second_build)
        second.start()
        second.join(timeout=1)
        assert second.is_alive() and said == [
            f"waiting for another bundle build on this machine to finish (it holds {tmp_path / 'build.lock'})"]
        order.append("first done")
    second.join(timeout=10)
    assert order == ["first done", "second"]


def test_a_blob_the_registry_lacks_is_named_as_a_blob(registry, tmp_path):
    url, served, _ = registry
    manifest = (STORE / bundle_build.model_manifest("standin-offline:1b")).read_bytes()
    digest = bundle_build.manifest_digests(manifest)[-1]
    missing = "sha256:" + "0" * 64
    served["/v2/library/standin-offline/manifests/1b"] = manifest.replace(digest.encode(), missing.encode())
    with pytest.raises(InstallerError) as raised:
        pulled(tmp_path, url, ["standin-offline:1b"])
    assert str(raised.value) == (f"ollama_models: standin-offline:1b: the blob {missing}: "
                                 f"{url}/v2/library/standin-offline/blobs/{missing}: 404 Not Found")


def test_a_transfer_cut_short_is_an_error_that_names_it_not_a_traceback(registry, tmp_path):
    url, served, _ = registry
    served["/v2/library/standin-offline/manifests/1b"] = (b'{"layers": [', 4096)
    with pytest.raises(InstallerError) as raised:
        pulled(tmp_path, url, ["standin-offline:1b"])
    assert str(raised.value).startswith(f"ollama_models: standin-offline:1b: {url}/v2/library/standin-offline/"
                                        "manifests/1b: IncompleteRead")
