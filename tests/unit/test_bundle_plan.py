"""The offline bundle's plan (platformctl/bundle_plan.py): each host's packages rendered from
the role manifests with the inventory's settings and each release's role vars, and the
manifests kept in step with the apt tasks they describe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from platformctl import bundle_plan, inventory, manifests
from platformctl.errors import BadInput

ROOT = Path(__file__).resolve().parents[2]

HOSTS = """\
all:
  hosts:
    db: {ansible_connection: local}
    web: {ansible_connection: local}
  children:
    postgres: {hosts: {db: {}}}
    redis: {hosts: {db: {}}}
    monitoring: {hosts: {db: {}}}
    app: {hosts: {web: {}}}
    edge: {hosts: {web: {}}}
"""


def with_group(group: str, host: str, hosts: str = HOSTS) -> str:
    return hosts + f"    {group}: {{hosts: {{{host}: {{}}}}}}\n"


def plan_of(folder: Path, releases=("12", "13"), hosts=HOSTS, main: str = "---\n") -> bundle_plan.Plan:
    """The plan of an inventory written at `folder` (a new one each time)."""
    (folder / "group_vars" / "all").mkdir(parents=True)
    (folder / "hosts.yml").write_text(hosts)
    (folder / "group_vars" / "all" / "main.yml").write_text(main)
    return bundle_plan.make(inventory.load(inventory.resolve(str(folder)), []), list(releases))


def test_each_release_gets_its_own_packages_from_the_role_vars(tmp_path):
    plan = plan_of(tmp_path / "inventory")
    debian12, debian13 = plan.packages["12"]["debian"], plan.packages["13"]["debian"]
    # postgresql's vars/Debian-12.yml and Debian-13.yml: the release's own major version.
    assert debian12["postgresql-15"] == ["postgresql"] and "postgresql-17" not in debian12
    assert debian13["postgresql-17"] == ["postgresql"] and "postgresql-15" not in debian13
    # docker's vars/Debian-12.yml has no docker-cli package; trixie splits the client out.
    assert "docker-cli" not in debian12 and debian13["docker-cli"] == ["docker"]
    # One package wanted by several roles is listed once, with each of them.
    assert debian12["python3-cryptography"] == ["nginx", "postgresql", "redis"]
    assert set(plan.packages["12"]) == {"debian"}
    # The controller's own: installer.py's virtual environment with the release's Python, gpg.
    assert {name for name, roles in debian13.items() if roles == ["controller"]} == {"python3-venv", "python3.13-venv",
                                                                                     "gpg"}


def test_a_host_gets_the_packages_of_its_own_roles_only(tmp_path):
    hosts = HOSTS.replace("    monitoring: {hosts: {db: {}}}\n", "")
    debian12 = plan_of(tmp_path / "inventory", ("12",), hosts).packages["12"]["debian"]
    # No monitoring host: no Prometheus and no exporter anywhere (monitoring needs_hosts_in).
    assert not [name for name in debian12 if name.startswith("prometheus")]
    assert "ufw" in debian12 and "nvidia-driver" not in debian12
    no_edge = HOSTS.replace("edge: {hosts: {web: {}}}", "edge: {hosts: {}}")
    with_monitoring = plan_of(tmp_path / "second", ("12",), no_edge)
    found = with_monitoring.packages["12"]["debian"]
    assert {"prometheus", "prometheus-alertmanager", "prometheus-postgres-exporter"} <= set(found)
    # The nginx exporter goes where nginx runs: no edge host, no nginx exporter.
    assert "prometheus-nginx-exporter" not in found and "nginx" not in found


def test_a_replicated_redis_set_brings_sentinel_and_haproxy(tmp_path):
    single = plan_of(tmp_path / "single", ("12",)).packages["12"]["debian"]
    assert "redis-sentinel" not in single and "haproxy" not in single
    hosts = HOSTS.replace("    db: {ansible_connection: local}\n",
                          "    db: {ansible_connection: local}\n    db2: {ansible_connection: local}\n"
                          "    db3: {ansible_connection: local}\n")
    hosts = hosts.replace("redis: {hosts: {db: {}}}", "redis: {hosts: {db: {}, db2: {}, db3: {}}}")
    replicated = plan_of(tmp_path / "replicated", ("12",), hosts).packages["12"]["debian"]
    assert replicated["redis-sentinel"] == ["redis"] and replicated["haproxy"] == ["haproxy"]


def test_settings_choose_packages_and_their_repository(tmp_path):
    main = ("---\nnginx_tls_mode: acme\npostgresql_repository: pgdg\ndocker_source: docker-ce\n"
            "common_packages_extra: [htop]\n")
    plan = plan_of(tmp_path / "inventory", ("12",), with_group("gpu", "web"), main=main)
    by_repository = plan.packages["12"]
    assert by_repository["debian"]["certbot"] == ["nginx"]
    assert by_repository["debian"]["htop"] == ["common"]
    assert by_repository["pgdg"]["postgresql-17"] == ["postgresql"]
    assert {"postgresql-common", "gnupg"} <= set(by_repository["debian"])
    assert "docker-ce" in by_repository["docker-ce"]
    version = manifests.role_default("nvidia_container_toolkit", "nvidia_container_toolkit_version")
    assert f"nvidia-container-toolkit={version}" in by_repository["nvidia"]
    assert "nvidia-driver" in by_repository["debian"]


def test_a_vendor_repository_comes_with_where_to_fetch_it(tmp_path):
    """NVIDIA's repository as the role adds it: its URI, suite and key pinned by fingerprint,
    or the inventory's local copy of it in their place."""
    plan = plan_of(tmp_path / "inventory", ("12", "13"), with_group("gpu", "web"))
    default = manifests.role_default
    assert plan.sources["12"] == plan.sources["13"] == {"nvidia": {
        "uri": default("nvidia_container_toolkit", "nvidia_container_toolkit_repo_url"), "suite": "/",
        "key_url": default("nvidia_container_toolkit", "nvidia_container_toolkit_repo_key_url"),
        "key_fingerprint": default("nvidia_container_toolkit", "nvidia_container_toolkit_repo_key_fingerprint"),
        "local": ""}}
    assert "nvidia" not in plan_of(tmp_path / "no-gpu", ("12",)).sources.get("12", {})
    mirrored = plan_of(tmp_path / "mirrored", ("12",), with_group("gpu", "web"),
                       main="---\nnvidia_container_toolkit_repo_src: /srv/nvidia\n")
    assert mirrored.sources["12"]["nvidia"]["local"] == "/srv/nvidia"


def test_gpu_hosts_that_run_apps_get_the_gpu_checks_image(tmp_path):
    image = manifests.role_default("nvidia_container_toolkit", "nvidia_container_toolkit_verify_image")
    assert plan_of(tmp_path / "gpu", ("12",), with_group("gpu", "web")).images == {image: ""}
    assert plan_of(tmp_path / "no-gpu", ("12",)).images == {}
    own = plan_of(tmp_path / "own", ("12",), with_group("gpu", "web"),
                  main="---\nnvidia_container_toolkit_verify_image: registry.internal/cuda:12\n")
    assert own.images == {"registry.internal/cuda:12": ""}


def test_hosts_that_fetch_one_repository_differently_are_refused(tmp_path):
    # The toolkit goes to GPU hosts that run apps: two of them, one with a local copy.
    hosts = HOSTS.replace("app: {hosts: {web: {}}}", "app: {hosts: {web: {}, db: {}}}") + \
        "    gpu: {hosts: {db: {nvidia_container_toolkit_repo_src: /srv/a}, web: {}}}\n"
    with pytest.raises(BadInput) as raised:
        plan_of(tmp_path / "inventory", ("12",), hosts)
    assert "the nvidia repository's settings differ from another host's (local)" in str(raised.value)


def test_apps_and_ollama_artifacts_come_from_the_inventory(tmp_path):
    hosts = with_group("ollama", "db")
    main = """---
ollama_models: ["qwen2:0.5b"]
ollama_models_src: /srv/models
platform_apps:
  - {name: api, image: "registry.example.com/acme/api:1.4.2", port: 8000}
  - {name: web, image: "registry.example.com/acme/web:2.0", image_archive: /srv/web.tar, port: 8000}
"""
    plan = plan_of(tmp_path / "inventory", ("12",), hosts, main=main)
    # Each image once; an image_archive of it is what the bundle copies, else the image is saved.
    assert plan.images == {"registry.example.com/acme/api:1.4.2": "",
                           "registry.example.com/acme/web:2.0": "/srv/web.tar"}
    assert bundle_plan.image_file("registry.example.com/acme/api:1.4.2") == "registry.example.com_acme_api_1.4.2.tar"
    assert plan.ollama_models == ["qwen2:0.5b"] and plan.ollama_models_src == "/srv/models"
    release = manifests.role_default("ollama", "ollama_version")
    assert plan.ollama_archive["url"].endswith(f"/v{release}/ollama-linux-amd64.tgz")
    assert plan.ollama_archive["name"] == "ollama-linux-amd64.tgz" and plan.ollama_archive["sha256"]


def test_a_package_list_that_renders_to_no_list_names_the_manifest(tmp_path, monkeypatch):
    broken = manifests.Packages(names="{{ redis_port }}")
    loaded = manifests.load_all()
    patched = [m if m.role != "redis" else manifests.Manifest(**{**m.__dict__, "packages": (broken,)}) for m in loaded]
    monkeypatch.setattr(manifests, "load_all", lambda *args: patched)
    with pytest.raises(BadInput) as raised:
        plan_of(tmp_path / "inventory", ("12",))
    assert str(raised.value).startswith("roles/redis/meta/platform.yml: packages[0] on db: names: expected a list")


# --- the manifests and the apt tasks ------------------------------------------------------------

VARIABLE = re.compile(r"\b__\w+")
# Variables an apt task names that the bundle covers otherwise, with the reason.
COVERED_OTHERWISE = {
    # The host's kernels' headers; the bundle carries linux-headers-amd64 (__nvidia_driver_packages).
    "__nvidia_driver_build_kernels",
}


def apt_tasks(role: str):
    for file in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
        yield from _apt_tasks(yaml.safe_load(file.read_text()) or [], file)


def _apt_tasks(tasks: list, file: Path):
    for task in tasks:
        if "block" in task:
            yield from _apt_tasks(task["block"], file)
        elif "ansible.builtin.apt" in task and "name" in (task["ansible.builtin.apt"] or {}):
            yield file, task


@pytest.mark.parametrize("role", sorted(m.role for m in manifests.load_all()))
def test_every_apt_task_installs_what_the_manifest_lists(role):
    """Every variable an apt task takes its packages from is one the role's manifest lists too,
    and every package name is a variable's: a package added to a task reaches the bundle."""
    manifest = next(m for m in manifests.load_all() if m.role == role)
    listed = {name for entry in manifest.packages for name in VARIABLE.findall(entry.names)}
    for file, task in apt_tasks(role):
        names = task["ansible.builtin.apt"]["name"]
        assert isinstance(names, str) and "{{" in names, \
            f"{file.name}: {task['name']}: name: list the packages in a role variable the manifest names"
        used = set(VARIABLE.findall(names)) - COVERED_OTHERWISE
        assert used and used <= listed, f"{file.name}: {task['name']}: {sorted(used - listed)} not in the manifest"
    assert bool(manifest.packages) == any(True for _ in apt_tasks(role))


def test_packages_from_repositories_with_no_source_are_refused_with_what_to_set(tmp_path):
    main = "---\npostgresql_repository: pgdg\ndocker_source: docker-ce\n"
    plan = plan_of(tmp_path / "inventory", ("12",), with_group("gpu", "web"), main=main)
    # NVIDIA's has a source (its manifest says where to fetch it); Docker's and PGDG's not yet.
    assert [line.split(" repository")[0] for line in bundle_plan.not_bundled(plan)] == [
        "packages from the docker-ce", "packages from the pgdg"]
    assert "set postgresql_repository: distribution" in bundle_plan.not_bundled(plan)[1]
    assert bundle_plan.not_bundled(plan_of(tmp_path / "plain", ("12",))) == []


def test_installer_bundle_refuses_them_before_building_anything(tmp_path, capsys):
    from platformctl.cli import main

    folder = tmp_path / "inventory"
    plan_of(folder, ("12",), main="---\ndocker_source: docker-ce\n")
    output = tmp_path / "platform.bundle"
    assert main(["bundle", "--inventory", str(folder), "--output", str(output), "--release", "12"]) == 4
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [f"error: {folder}: packages from the docker-ce repository (containerd.io, docker-buildx-plugin, "
                      "docker-ce, docker-ce-cli, python3-docker): bundles do not carry it yet (its role's manifest "
                      "gives no source); set docker_source: docker.io (Debian's engine)"]
    assert not output.exists()


def test_a_bundle_lacking_a_vendor_package_version_is_named(tmp_path):
    plan = plan_of(tmp_path / "inventory", ("12",), with_group("gpu", "web"))
    bundled = plan.as_dict()
    older = {name.replace("=1.", "=0."): roles for name, roles in plan.packages["12"]["nvidia"].items()}
    bundled["packages"] = {"12": {**plan.packages["12"], "nvidia": older}}
    assert bundle_plan.missing(plan, bundled) == [
        "Debian 12: the packages " + ", ".join(sorted(plan.packages["12"]["nvidia"])) + " (from the nvidia repository)"]
    assert bundle_plan.missing(plan, plan.as_dict()) == []


def test_installer_bundle_refuses_a_model_registry_beside_a_local_store(tmp_path, capsys):
    from platformctl.cli import main

    folder = tmp_path / "inventory"
    plan_of(folder, ("12",), with_group("ollama", "db"), main="---\nollama_models: [qwen2:0.5b]\n"
                                                             "ollama_models_src: /srv/models\n")
    output = tmp_path / "platform.bundle"
    assert main(["bundle", "--inventory", str(folder), "--output", str(output), "--release", "12",
                 "--model-registry", "https://mirror.internal"]) == 4
    assert capsys.readouterr().err.strip() == (
        "error: --model-registry https://mirror.internal: the inventory's ollama_models_src (/srv/models) gives the "
        "models; leave one of them out")
    assert not output.exists()
