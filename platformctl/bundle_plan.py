"""What an offline bundle must hold for an inventory, derived from the role manifests and the
inventory's settings, never from a hand-kept list: the apt packages of each host's roles for
each Debian release, the app images, the Ollama release and the models the inventory lists.

A role's packages are its manifest's `packages` entries rendered as the role renders them: the
host's settings over the role's defaults, under the role's vars and the release's own vars
files (tasks/os_vars.yml loads them on the host), with the facts a host of that release has.
"""

from __future__ import annotations

import re
from collections import ChainMap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformctl import hostchecks, manifests
from platformctl.errors import BadInput

# The codename of each supported Debian release: the bundle's apt repository per release.
DEBIAN_CODENAMES = {"12": "bookworm", "13": "trixie"}
# The Python each release ships: an offline controller builds installer.py's virtual
# environment with it, from the bundle's wheels for that version.
DEBIAN_PYTHON = {"12": "3.11", "13": "3.13"}
# Listed as the packages of this pseudo-role.
CONTROLLER = "controller"
ARCHITECTURE = "x86_64"


def supported_releases() -> list[str]:
    """The Debian major versions preflight accepts, which a bundle covers by default."""
    return [name.split()[1] for name in hostchecks.SUPPORTED_OS if name.startswith("Debian ")]


def controller_packages(release: str) -> list[str]:
    """What a controller of this release installs to run installer.py and check a bundle: venv
    support (as installer.py's bootstrap installs it) and gpg."""
    return ["python3-venv", f"python{DEBIAN_PYTHON[release]}-venv", "gpg"]


def release_facts(release: str) -> dict[str, Any]:
    """The facts the roles read to pick a release's settings, as a Debian host of it has them."""
    facts = {"distribution": "Debian", "os_family": "Debian", "distribution_major_version": release,
             "distribution_release": DEBIAN_CODENAMES[release], "architecture": ARCHITECTURE}
    return {"ansible_facts": facts, **{f"ansible_{key}": value for key, value in facts.items()}}


@dataclass
class Plan:
    """What the bundle holds: packages[release][repository][package] = the roles that install
    it; sources[release][repository] = where the build fetches a repository other than
    Debian's (the role manifest's `source`, rendered); images (each app image -> the
    inventory's image_archive of it, or "" to pull and save it); the Ollama release and
    models, where hosts run Ollama."""

    packages: dict[str, dict[str, dict[str, list[str]]]] = field(default_factory=dict)
    sources: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)
    ollama_archive: dict[str, str] = field(default_factory=dict)
    ollama_models: list[str] = field(default_factory=list)
    ollama_models_src: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"packages": self.packages, "sources": self.sources, "images": self.images,
                "ollama_archive": self.ollama_archive, "ollama_models": self.ollama_models,
                "ollama_models_src": self.ollama_models_src}


def image_file(image: str) -> str:
    """The bundle's file of an app image (images/FILE): the reference with `/` and `:` made safe."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", image) + ".tar"


def trusted(value: Any) -> Any:
    """Role files' strings as templates, trusted as the role's own are when Ansible runs it."""
    from ansible.template import trust_as_template

    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {key: trusted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [trusted(item) for item in value]
    return value


class RoleContext:
    """A role's variables on one host of one release, in Ansible's order of precedence."""

    def __init__(self, loader: Any, roles_dir: Path) -> None:
        self.loader = loader
        self.roles_dir = roles_dir
        self._files: dict[Path, dict] = {}

    def _file(self, path: Path) -> dict:
        if path not in self._files:
            self._files[path] = trusted(self.loader.load_from_file(str(path)) or {}) if path.is_file() else {}
        return self._files[path]

    def templar(self, role: str, host_vars: dict, release: str) -> Any:
        from ansible.template import Templar

        vars_dir = self.roles_dir / role / "vars"
        facts = release_facts(release)["ansible_facts"]
        # tasks/os_vars.yml: the family's file, then the distribution's, then the release's.
        os_files = dict.fromkeys([f"{facts['os_family']}.yml", f"{facts['distribution']}.yml",
                                  f"{facts['distribution']}-{release}.yml"])
        layers = [self._file(vars_dir / name) for name in reversed(os_files)]
        context = ChainMap(*layers, self._file(vars_dir / "main.yml"),
                           {"role_path": str(self.roles_dir / role), "role_name": role}, release_facts(release),
                           host_vars, self._file(self.roles_dir / role / "defaults" / "main.yml"),
                           *(self._file(self.roles_dir / dependency / "defaults" / "main.yml")
                             for dependency in manifests.role_dependencies(role, self.roles_dir)))
        return Templar(loader=self.loader, variables=context)


def role_packages(templar: Any, manifest: manifests.Manifest,
                  host: str) -> tuple[dict[str, list[str]], dict[str, dict[str, str]]]:
    """repository -> the packages `manifest`'s role installs from it on this host, and
    repository -> its rendered source, for those the manifest says where to fetch."""
    from ansible.errors import AnsibleError

    found: dict[str, list[str]] = {}
    sources: dict[str, dict[str, str]] = {}
    for n, entry in enumerate(manifest.packages):
        where = f"roles/{manifest.role}/meta/platform.yml: packages[{n}] on {host}"
        try:
            if entry.when and not templar.evaluate_conditional(trusted(entry.when)):
                continue
            names = templar.template(trusted(entry.names))
            repository = str(templar.template(trusted(entry.repository)))
            if entry.source:
                sources[repository] = {key: str(templar.template(trusted(value))) for key, value in entry.source}
        except AnsibleError as err:
            raise BadInput(f"{where}: {str(err).splitlines()[0]}") from None
        if not isinstance(names, list) or not all(isinstance(name, str) and name for name in names):
            raise BadInput(f"{where}: names: expected a list of package names, got {names!r}")
        found.setdefault(repository, []).extend(names)
    return found, sources


def make(loaded: Any, releases: list[str]) -> Plan:
    """The bundle's plan for the inventory `loaded` (platformctl.inventory.load)."""
    roles_dir = manifests.ansible_roles_dir()
    all_manifests = manifests.load_all(roles_dir)
    groups = loaded.groups()
    contexts = RoleContext(loaded.loader, roles_dir)
    plan = Plan()
    for release in releases:
        if release not in DEBIAN_CODENAMES:
            raise BadInput(f"--release {release}: expected one of {', '.join(DEBIAN_CODENAMES)}")
        by_repository = plan.packages.setdefault(release, {})
        by_repository["debian"] = {name: [CONTROLLER] for name in controller_packages(release)}
        for host in loaded.hosts():
            host_vars = loaded.host_vars(host)
            for manifest in all_manifests:
                if not manifest.packages or not manifest.applies(loaded.groups_of(host), groups):
                    continue
                templar = contexts.templar(manifest.role, host_vars, release)
                found, sources = role_packages(templar, manifest, host)
                for repository, source in sources.items():
                    known = plan.sources.setdefault(release, {}).setdefault(repository, source)
                    if known != source:
                        raise BadInput(f"{host}: the {repository} repository's settings differ from another host's "
                                       f"({', '.join(k for k in source if source[k] != known.get(k))}): a bundle "
                                       "fetches each repository once; give every host the same")
                for repository, names in found.items():
                    wanted = by_repository.setdefault(repository, {})
                    for name in names:
                        wanted[name] = sorted({*wanted.get(name, []), manifest.role})
    _add_artifacts(plan, loaded, all_manifests, contexts, releases[0] if releases else "12")
    return plan


def _add_artifacts(plan: Plan, loaded: Any, all_manifests: list, contexts: RoleContext, release: str) -> None:
    """The app images, the GPU check's image, and Ollama's release and models, as the app,
    nvidia_container_toolkit and ollama roles resolve them."""
    groups = loaded.groups()
    for host in loaded.hosts():
        host_vars = loaded.host_vars(host)
        roles = set(manifests.roles_of_host(all_manifests, loaded.groups_of(host), groups))
        if "app" in roles:
            templar = contexts.templar("app", host_vars, release)
            for app in templar.template(trusted("{{ platform_apps | default([]) }}")) or []:
                image = str(app["image"])
                plan.images[image] = plan.images.get(image) or str(app.get("image_archive") or "")
        if "nvidia_container_toolkit" in roles:
            # The image install and verify run with --gpus all to prove containers see the GPU.
            templar = contexts.templar("nvidia_container_toolkit", host_vars, release)
            image = str(templar.template(trusted("{{ nvidia_container_toolkit_verify_image }}")))
            plan.images[image] = plan.images.get(image) or ""
        if "ollama" in roles:
            templar = contexts.templar("ollama", host_vars, release)
            settings = templar.template(trusted({
                "src": "{{ ollama_archive_src }}", "url": "{{ ollama_archive_url }}",
                "name": "{{ ollama_archive_name }}", "sha256": "{{ ollama_archive_sha256 }}",
                "models": "{{ ollama_models }}", "models_src": "{{ ollama_models_src }}"}))
            plan.ollama_archive = {key: str(settings[key]) for key in ("src", "url", "name", "sha256")}
            plan.ollama_models = sorted({*plan.ollama_models, *settings["models"]})
            plan.ollama_models_src = plan.ollama_models_src or str(settings["models_src"])


# What to do where the inventory wants packages from a repository other than Debian's whose
# role manifest gives no `source`: bundles do not carry those yet.
NOT_BUNDLED = {
    "docker-ce": "set docker_source: docker.io (Debian's engine)",
    "pgdg": "set postgresql_repository: distribution (Debian's PostgreSQL)",
    "grafana": "set monitoring_grafana_install: false and install Grafana yourself, or leave it out",
}


def not_bundled(plan: Plan) -> list[str]:
    """One message per repository other than Debian's, with no source to fetch it from, that
    the inventory's packages come from."""
    found: dict[str, set[str]] = {}
    for release, by_repository in plan.packages.items():
        for repository, names in by_repository.items():
            if repository != "debian" and repository not in plan.sources.get(release, {}):
                found.setdefault(repository, set()).update(names)
    return [f"packages from the {repository} repository ({', '.join(sorted(names))}): bundles do not carry it yet "
            f"(its role's manifest gives no source); {NOT_BUNDLED.get(repository, 'choose the distribution package')}"
            for repository, names in sorted(found.items())]


def missing(plan: Plan, bundled: dict[str, Any]) -> list[str]:
    """What the inventory's install needs that a bundle's plan (its bundle.json) lacks: each
    package of each release it carries, each app image, Ollama's release and each model."""
    lacking = []
    for release, by_repository in plan.packages.items():
        for repository, names in sorted(by_repository.items()):
            absent = sorted(set(names) - set(bundled["packages"].get(release, {}).get(repository, {})))
            if absent:
                lacking.append(f"Debian {release}: the packages {', '.join(absent)}"
                               + ("" if repository == "debian" else f" (from the {repository} repository)"))
    lacking += [f"the image {image}" for image in sorted(set(plan.images) - set(bundled["images"]))]
    if plan.ollama_archive and plan.ollama_archive["name"] != (bundled["ollama_archive"] or {}).get("name"):
        lacking.append(f"Ollama's release {plan.ollama_archive['name']}")
    lacking += [f"the model {model}" for model in sorted(set(plan.ollama_models) - set(bundled["ollama_models"]))]
    return lacking
