"""`installer.py bundle --inventory ENV`: on a machine with internet, everything that inventory's
install needs, in one signed archive (platformctl/bundle.py describes the archive).

What goes in comes from the bundle's plan (platformctl/bundle_plan.py). The packages of each
Debian release are resolved against a clean system of that release, a container of its image,
so that their dependencies are whatever such a host lacks, and published there as a flat apt
repository signed with the key made for this bundle.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from platformctl import bundle, paths, validation
from platformctl.bundle_plan import DEBIAN_CODENAMES, DEBIAN_PYTHON, Plan, image_file
from platformctl.errors import BadInput, InstallerError

# The clean system each release's packages are resolved on (--build-image RELEASE=IMAGE).
DEFAULT_BUILD_IMAGES = {release: f"debian:{codename}-slim" for release, codename in DEBIAN_CODENAMES.items()}
# The Debian archive's components: the NVIDIA driver is in non-free, its firmware in
# non-free-firmware.
COMPONENTS = "main contrib non-free non-free-firmware"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "linux_x86_64")
PLAN_FILE = "bundle.json"
# Ollama's own registry, where a model named without one (qwen2:0.5b) comes from; a bundle
# build may take those from a mirror of it (--model-registry URL).
OLLAMA_REGISTRY = "registry.ollama.ai"
DEFAULT_MODEL_REGISTRY = f"https://{OLLAMA_REGISTRY}"
MODEL_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
APT_DIR = "apt"

# Run in the release's container as root: the packages and every dependency the clean system
# lacks, downloaded, then indexed as a flat repository (Packages, Release; signed outside).
RESOLVE = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive
for sources in /etc/apt/sources.list.d/*.sources; do
  [ -e "$sources" ] && sed -i -E "s/^Components:.*/Components: $COMPONENTS/" "$sources"
done
word='[^[:space:]]+[[:space:]]+'
list=/etc/apt/sources.list
[ -s $list ] && sed -i -E "s/^(deb[[:space:]]+$word[^[:space:]]+).*/\1 $COMPONENTS/" $list
# The vendors' repositories the roles add, each under its own pinned key.
for sources in /vendor/*.sources; do
  [ -e "$sources" ] && cp "$sources" /etc/apt/sources.list.d/
done
# Their https, checked with the controller's CA certificates: a clean image has none.
if [ -e /vendor/ca-certificates.crt ]; then
  echo 'Acquire::https::CAInfo "/vendor/ca-certificates.crt";' > /etc/apt/apt.conf.d/00vendor-ca
fi
apt-get update -qq
apt-get install -y -qq --download-only -o Dir::Cache::archives=/repository "$@" >/dev/null
rm -rf /repository/partial /repository/lock
command -v apt-ftparchive >/dev/null || apt-get install -y -qq --no-install-recommends apt-utils >/dev/null
cd /repository
apt-ftparchive packages . > Packages
gzip -9kn Packages
apt-ftparchive -o APT::FTPArchive::Release::Origin=platform-bundle -o APT::FTPArchive::Release::Label=platform-bundle \
  -o APT::FTPArchive::Release::Suite="$CODENAME" -o APT::FTPArchive::Release::Codename="$CODENAME" \
  release . > /tmp/Release
mv /tmp/Release Release
chown -R "$OWNER" /repository
"""


@dataclass
class Component:
    name: str
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)
    bytes: int = 0


class Build:
    """One bundle build in a work folder; each step adds a component and times it."""

    def __init__(self, plan: Plan, work: Path, say: Callable[[str], None], build_images: dict[str, str], *,
                 model_registry: str = DEFAULT_MODEL_REGISTRY) -> None:
        self.plan, self.work, self.say = plan, work, say
        self.build_images = {**DEFAULT_BUILD_IMAGES, **build_images}
        self.model_registry = model_registry.rstrip("/")
        self.components: list[Component] = []

    def step(self, name: str, action: Callable[[Component], None]) -> None:
        component = Component(name)
        started = time.monotonic()
        action(component)
        component.seconds = time.monotonic() - started
        component.bytes = sum(f.stat().st_size for f in component.files)
        self.components.append(component)
        self.say(f"{name}: {len(component.files)} files, {component.bytes / 1e6:.1f} MB "
                 f"in {component.seconds:.0f} s")

    # --- the steps ---------------------------------------------------------------------

    def packages(self, release: str, component: Component) -> None:
        """Every package of the release, Debian's and the vendors' (plan.sources), with their
        dependencies, in one flat repository the bundle's key signs."""
        wanted = self.plan.packages[release]
        names = sorted(name for by_name in wanted.values() for name in by_name)
        codename = DEBIAN_CODENAMES[release]
        target = self.work / APT_DIR / codename
        target.mkdir(parents=True)
        image = self.build_images[release]
        with tempfile.TemporaryDirectory(prefix="vendor-", dir=self.work.parent) as vendor_dir:
            mounts = self.vendor_sources(release, Path(vendor_dir))
            self.say(f"packages for Debian {release} ({codename}): resolving {len(names)} packages in {image}")
            environment = {"COMPONENTS": COMPONENTS, "CODENAME": codename, "OWNER": f"{os.getuid()}:{os.getgid()}"}
            command = ["docker", "run", "--rm", "--entrypoint", "sh", "-v", f"{target}:/repository", *mounts,
                       *(arg for key, value in environment.items() for arg in ("-e", f"{key}={value}")),
                       image, "-c", RESOLVE, "resolve", *names]
            resolved = subprocess.run(command, capture_output=True, text=True, check=False)
        if resolved.returncode != 0:
            raise InstallerError(f"resolving the packages of Debian {release} in {image} failed "
                                 f"(exit {resolved.returncode}): {resolved.stderr.strip()[-2000:]}")
        component.files = sorted(p for p in target.iterdir() if p.is_file())

    def vendor_sources(self, release: str, folder: Path) -> list[str]:
        """Each vendor repository's deb822 source and key in `folder` (the build container's
        /vendor), its key checked against the pinned fingerprint first; the docker mounts."""
        folder.chmod(0o755)  # apt's sandbox user reads the keys
        mounts = ["-v", f"{folder}:/vendor:ro"]
        for repository, source in sorted(self.plan.sources.get(release, {}).items()):
            local = Path(source["local"]).expanduser() if source.get("local") else None
            if local is not None:
                if not (local / "gpgkey").is_file():
                    raise BadInput(f"the {repository} repository's local copy {local}: no gpgkey in it")
                key = (local / "gpgkey").read_bytes()
                # copy: (not file:) so that apt copies its packages into the download folder.
                uri = f"copy:/vendor-repositories/{repository}"
                mounts += ["-v", f"{local.resolve()}:/vendor-repositories/{repository}:ro"]
            else:
                self.say(f"packages: the {repository} repository's key from {source['key_url']}")
                key, _ = download(source["key_url"], f"the {repository} repository's key")
                uri = source["uri"]
                if uri.startswith("https://") and not (folder / "ca-certificates.crt").exists():
                    shutil.copyfile(controller_ca_file(), folder / "ca-certificates.crt")
                    (folder / "ca-certificates.crt").chmod(0o644)
            with bundle.keyring() as ring:
                found = ring.import_key(key)
            pinned = validation.plan("signing_keys").fingerprint_of(source["key_fingerprint"])
            if found != [pinned]:
                raise InstallerError(f"the {repository} repository's key has the fingerprint "
                                     f"{', '.join(found) or 'of no OpenPGP key'}, not the pinned {pinned}: "
                                     "the packages would not be the vendor's")
            (folder / f"{repository}.asc").write_bytes(key)
            (folder / f"{repository}.asc").chmod(0o644)
            lines = ["Types: deb", f"URIs: {uri}", f"Suites: {source['suite']}",
                     *([f"Components: {source['components']}"] if source.get("components") else []),
                     f"Signed-By: /vendor/{repository}.asc"]
            (folder / f"{repository}.sources").write_text("\n".join(lines) + "\n")
            (folder / f"{repository}.sources").chmod(0o644)
        return mounts

    def sign_repositories(self, key_home: Path, fingerprint: str) -> None:
        ring = bundle.Keyring(key_home)
        for release_file in sorted((self.work / APT_DIR).glob("*/Release")):
            data = release_file.read_bytes()
            (release_file.parent / "Release.gpg").write_bytes(ring.sign(fingerprint, data))
            (release_file.parent / "InRelease").write_bytes(ring.clearsign(fingerprint, data))

    def wheels(self, releases: list[str], component: Component) -> None:
        """requirements.txt's wheels for the Python of each release, where the controller may run."""
        target = self.work / "wheels"
        target.mkdir()
        shutil.copy2(paths.ROOT / "requirements.txt", target / "requirements.txt")
        for version in sorted({DEBIAN_PYTHON[release] for release in releases}):
            folder = target / f"python{version}"
            platforms = [arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)]
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--implementation",
                       "cp", "--python-version", version, *platforms, "--require-hashes", "--dest", str(folder),
                       "-r", str(target / "requirements.txt")]
            fetched = subprocess.run(command, capture_output=True, text=True, check=False)
            if fetched.returncode != 0:
                raise InstallerError(f"pip could not download the controller's wheels for Python {version}: "
                                     f"{fetched.stderr.strip()[-2000:]}")
        component.files = sorted(p for p in target.rglob("*") if p.is_file())

    def images(self, component: Component) -> None:
        target = self.work / "images"
        target.mkdir()
        for image, archive in sorted(self.plan.images.items()):
            file = target / image_file(image)
            if archive:
                source = Path(archive).expanduser()
                if not source.is_file():
                    raise BadInput(f"platform_apps: image_archive {archive} (of {image}): no such file on this machine")
                shutil.copy2(source, file)
                continue
            if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode:
                self.say(f"images: pulling {image}")
                pulled = subprocess.run(["docker", "pull", "--quiet", image], capture_output=True, text=True,
                                        check=False)
                if pulled.returncode != 0:
                    raise InstallerError(f"platform_apps: docker could not pull {image}: {pulled.stderr.strip()}")
            saved = subprocess.run(["docker", "save", "--output", str(file), image], capture_output=True, text=True,
                                   check=False)
            if saved.returncode != 0:
                raise InstallerError(f"platform_apps: docker could not save {image}: {saved.stderr.strip()}")
        component.files = sorted(target.iterdir())

    def ollama(self, component: Component) -> None:
        archive = self.plan.ollama_archive
        target = self.work / "ollama" / archive["name"]
        target.parent.mkdir()
        if archive["src"]:
            source = Path(archive["src"]).expanduser()
            if not source.is_file():
                raise BadInput(f"ollama_archive_src {archive['src']}: no such file on this machine")
            shutil.copy2(source, target)
        else:
            self.say(f"ollama: downloading {archive['url']}")
            found = download(archive["url"], "ollama_archive_url", into=target)[1]
        if archive["sha256"]:
            if archive["src"]:
                with target.open("rb") as stream:
                    found = bundle.digest(stream).sha256
            if found != archive["sha256"]:
                raise InstallerError(f"{archive['name']}: sha256 {found}, not ollama_archive_sha256 "
                                     f"{archive['sha256']}: the download is not the pinned release")
        component.files = [target]

    def models(self, component: Component) -> None:
        """Each listed model's manifest and the blobs it names, in Ollama's store layout: from the
        store in ollama_models_src where the inventory sets it, else from the model's registry."""
        target = self.work / "models"
        if self.plan.ollama_models_src:
            self.models_from_store(Path(self.plan.ollama_models_src).expanduser(), target)
        else:
            for model in self.plan.ollama_models:
                self.pull_model(model, target)
        component.files = sorted(p for p in target.rglob("*") if p.is_file())

    def models_from_store(self, source: Path, target: Path) -> None:
        missing = []
        for model in self.plan.ollama_models:
            manifest = model_manifest(model)
            if not (source / manifest).is_file():
                missing.append(f"{model} (no {source / manifest})")
                continue
            try:
                digests = manifest_digests((source / manifest).read_bytes())
            except ValueError as error:
                raise BadInput(f"ollama_models_src: {source / manifest}: not an Ollama manifest ({error})") from None
            for name in (manifest, *(blob_file(digest) for digest in digests)):
                if not (source / name).is_file():
                    missing.append(f"{model} (no {source / name})")
                    continue
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source / name, target / name)
        if missing:
            raise BadInput(*(f"ollama_models_src {source}: {what}: pull the model there first" for what in missing))

    def pull_model(self, model: str, target: Path) -> None:
        """A model as `ollama pull` fetches it: its manifest from the registry (the OCI
        distribution API), then each blob it names, checked against its sha256 as it is written."""
        manifest = model_manifest(model)
        registry, *repository, tag = manifest.parts[1:]
        base = self.model_registry if registry == OLLAMA_REGISTRY else f"https://{registry}"
        path = "/".join(repository)
        self.say(f"ollama models: {model} from {base}")
        url = f"{base}/v2/{path}/manifests/{tag}"
        try:
            data, _ = download(url, f"ollama_models: {model}", headers={"Accept": MODEL_MANIFEST_TYPE})
        except NotFound:
            raise BadInput(f"ollama_models: {model}: the registry has no such model ({url}: 404); "
                           "check its name and tag") from None
        try:
            digests = manifest_digests(data)
        except ValueError as error:
            raise InstallerError(f"ollama_models: {model}: {base} answered with no Ollama manifest ({error})") from None
        for digest in digests:
            blob = target / blob_file(digest)
            if blob.is_file():  # a layer another model shares
                continue
            blob.parent.mkdir(parents=True, exist_ok=True)
            partial = blob.with_name(blob.name + ".partial")
            try:
                _, found = download(f"{base}/v2/{path}/blobs/{digest}", f"ollama_models: {model}: the blob {digest}",
                                    into=partial)
            except InstallerError:
                partial.unlink(missing_ok=True)
                raise
            if f"sha256:{found}" != digest:
                partial.unlink()
                raise InstallerError(f"ollama_models: {model}: the blob {digest} from {base} has the sha256 "
                                     f"{found}: the download is not the model's")
            partial.replace(blob)
        (target / manifest).parent.mkdir(parents=True, exist_ok=True)
        (target / manifest).write_bytes(data)


def controller_ca_file() -> Path:
    """The CA certificates this machine's Python checks https with (SSL_CERT_FILE, else the
    system's bundle), for the build container's apt to check the vendors' repositories."""
    verify_paths = ssl.get_default_verify_paths()
    for candidate in (verify_paths.cafile, verify_paths.openssl_cafile, "/etc/ssl/certs/ca-certificates.crt",
                      "/etc/pki/tls/certs/ca-bundle.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise InstallerError("no CA certificates on this machine to check the vendors' https repositories with: "
                         "install ca-certificates, or set SSL_CERT_FILE to a bundle of them")


class NotFound(InstallerError):
    """The server answered 404."""


def download(url: str, what: str, *, headers: dict[str, str] | None = None,
             into: Path | None = None) -> tuple[bytes, str]:
    """GET `url`: its body (written to `into` instead, where given) and its sha256. Every
    failure, a broken transfer included, is an InstallerError that names `what` and the URL."""
    if not url.startswith(("https://", "http://")):
        raise BadInput(f"{what}: {url}: expected an https:// URL")
    checksum, body = hashlib.sha256(), bytearray()
    try:
        request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (http and https only, above)
        with urllib.request.urlopen(request, timeout=60) as answer, \
                (into.open("wb") if into else contextlib.nullcontext()) as out:  # noqa: S310
            while chunk := answer.read(bundle.CHUNK):
                checksum.update(chunk)
                if out is None:
                    body += chunk
                else:
                    out.write(chunk)
            if answer.length:  # what Content-Length announced and never came
                raise http.client.IncompleteRead(b"", answer.length)
    except urllib.error.HTTPError as error:
        error.close()
        raise (NotFound if error.code == 404 else InstallerError)(f"{what}: {url}: {error.code} {error.reason}") \
            from None
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise InstallerError(f"{what}: {url}: {error}") from None
    return bytes(body), checksum.hexdigest()


def manifest_digests(data: bytes) -> list[str]:
    """The digests of the blobs an Ollama manifest names: its config's, then its layers'."""
    try:
        layers = json.loads(data)
        digests = [layers["config"]["digest"]] if "config" in layers else []
        digests += [layer["digest"] for layer in layers["layers"]]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(str(error) or type(error).__name__) from None
    if not all(isinstance(d, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", d) for d in digests):
        raise ValueError("a digest that is not sha256:HEX")
    return digests


def blob_file(digest: str) -> Path:
    return Path("blobs") / digest.replace(":", "-")


def model_manifest(model: str) -> Path:
    """Where Ollama's store keeps a model's manifest: name[:tag] as `ollama pull` names it."""
    name, _, tag = model.partition(":")
    parts = name.split("/")
    if len(parts) == 1:
        parts = ["library", *parts]
    if len(parts) == 2:
        parts = ["registry.ollama.ai", *parts]
    return Path("manifests", *parts, tag or "latest")


def build(plan: Plan, output: Path, releases: list[str], build_images: dict[str, str],
          say: Callable[[str], None], *, model_registry: str = DEFAULT_MODEL_REGISTRY) -> tuple[str, list[Component]]:
    """Builds the bundle at `output`; returns the bundle key's fingerprint and the components."""
    output = output.resolve()
    if output.exists():
        raise BadInput(f"--output {output}: exists; name a new file (bundles are never overwritten)")
    if not output.parent.is_dir():
        raise BadInput(f"--output {output}: no folder {output.parent}")
    ring = bundle.Keyring(bundle.signing_home())
    with bundle.signing_turn(ring.home, say), \
            tempfile.TemporaryDirectory(prefix="platformctl-bundle-", dir=output.parent) as work_dir:
        work = Path(work_dir) / "bundle"
        work.mkdir()
        job = Build(plan, work, say, build_images, model_registry=model_registry)
        try:
            fingerprint, made = bundle.signing_key(ring)
        finally:
            bundle.stop_agent(ring.home)
        say(f"signing with {'a new key made' if made else 'the key'} in {ring.home}: {fingerprint}")
        for release in releases:
            job.step(f"packages (Debian {release})", lambda component, release=release: job.packages(release,
                                                                                                     component))
        try:
            job.sign_repositories(ring.home, fingerprint)
        finally:
            bundle.stop_agent(ring.home)
        job.step("controller wheels", lambda component: job.wheels(releases, component))
        if plan.images:
            job.step("app images", job.images)
        if plan.ollama_archive:
            job.step("ollama release", job.ollama)
        if plan.ollama_models:
            job.step("ollama models", job.models)
        (work / PLAN_FILE).write_text(json.dumps({"releases": releases, "plan": plan.as_dict()}, indent=1,
                                                 sort_keys=True) + "\n")
        try:
            bundle.sign_folder(work, ring.home, fingerprint)
        finally:
            bundle.stop_agent(ring.home)
        partial = output.with_name(output.name + ".partial")
        bundle.pack(work, partial)
        partial.replace(output)
    return fingerprint, job.components
