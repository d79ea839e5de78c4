"""The ollama role, checked from outside the test hosts.

STAND-IN: Ollama cannot be downloaded on the CI machine. The role installs a
release-shaped archive (tests/ollama_standin) through its air-gapped path
(`ollama_archive_src` + `ollama_archive_sha256`); that archive's bin/ollama is a stand-in
that implements only the API the role uses (version, tags, pull with streamed progress,
delete). What is tested is the role: checksum, layout, unit, user, listening address,
model management and version switches, not Ollama's inference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

VERSION = "0.12.5"  # molecule.yml's ollama_version
BUMPED = "0.12.6"  # the other stand-in archive prepare.yml builds
PORT = 11434
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
# The platform the tests that converge again run on (each converge takes a while).
CHANGED_PLATFORM = "debian13"


def api(host, path: str) -> dict:
    result = host.run(f"curl -sS --fail --max-time 5 http://127.0.0.1:{PORT}{path}")
    assert result.rc == 0, result.stderr
    return json.loads(result.stdout)


def main_pid(host) -> int:
    return int(host.check_output("systemctl show --value -p MainPID ollama"))


def only_on(host, platform: str) -> None:
    if not host.backend.host.endswith(platform):
        pytest.skip(f"runs on the {platform} host only")


def converge(host, *extra_vars: str) -> subprocess.CompletedProcess:
    """Runs the scenario's converge playbook on one host with extra variables."""
    bindir = Path(sys.executable).parent
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    command = [str(bindir / "ansible-playbook"), "-i", str(inventory),
               "--limit", host.backend.host, str(SCENARIO / "converge.yml")]
    for extra in extra_vars:
        command += ["-e", extra]
    return subprocess.run(command, text=True, capture_output=True, check=False, timeout=600)


def test_service_runs_as_the_ollama_user(host):
    service = host.service("ollama")
    assert service.is_running
    assert service.is_enabled
    user = host.check_output(f"ps -o user= -p {main_pid(host)}")
    assert user == "ollama"


def test_unit_and_drop_in(host):
    unit = host.file("/etc/systemd/system/ollama.service")
    assert unit.contains("^ExecStart=/opt/ollama/current/bin/ollama serve$")
    assert unit.contains("^ProtectSystem=strict$")
    assert not unit.contains("^PrivateDevices=")
    # systemd itself reports the drop-in's environment, so the drop-in is really loaded.
    environment = host.check_output("systemctl show --value -p Environment ollama").split()
    # Ollama itself binds loopback only; systemd listens for it elsewhere (below).
    for expected in (f"OLLAMA_HOST=127.0.0.1:{PORT}", "OLLAMA_MODELS=/var/lib/ollama/models",
                     "OLLAMA_NUM_PARALLEL=4", "OLLAMA_MAX_LOADED_MODELS=3", "OLLAMA_KEEP_ALIVE=5m"):
        assert expected in environment
    after = host.check_output("systemctl show --value -p After ollama").split()
    on_gpu_host = "gpu" in host.ansible.get_variables()["group_names"]
    assert ("nvidia-persistenced.service" in after) == on_gpu_host


def test_release_layout(host):
    assert host.file("/opt/ollama/current").linked_to == f"/opt/ollama/{VERSION}"
    assert host.file("/usr/local/bin/ollama").linked_to == f"/opt/ollama/{VERSION}/bin/ollama"
    assert host.file(f"/opt/ollama/{VERSION}/lib/ollama").is_directory
    assert host.check_output("ollama --version") == f"ollama version is {VERSION}"
    assert api(host, "/api/version") == {"version": VERSION}


def probe_from_outside(host) -> subprocess.CompletedProcess:
    address = host.interface("eth0").addresses[0]
    return subprocess.run(["curl", "-sS", "--max-time", "5", f"http://{address}:{PORT}/api/version"],
                          text=True, capture_output=True, check=False)


def listening_addresses(host) -> set[str]:
    lines = host.check_output(f"ss -Htln 'sport = :{PORT}'").splitlines()
    return {line.split()[3].rsplit(":", 1)[0] for line in lines}


def runs_app_containers(host) -> bool:
    return "app" in host.ansible.get_variables()["group_names"]


def test_the_api_is_listened_on_where_its_clients_are_and_nowhere_else(host):
    """debian12 runs the app containers itself: loopback and the platform network's gateway
    (bound before any Docker network exists). debian13 serves debian12's apps: loopback and
    its own private address. Never every address."""
    expected = {"127.0.0.1", "172.31.0.1"} if runs_app_containers(host) else {
        "127.0.0.1", host.interface("eth0").addresses[0]}
    assert listening_addresses(host) == expected
    assert host.socket(f"tcp://0.0.0.0:{PORT}").is_listening is False


def test_only_a_host_serving_other_hosts_apps_answers_on_its_own_address(host):
    probe = probe_from_outside(host)
    if runs_app_containers(host):
        assert probe.returncode == 7, probe.stdout  # refused: nothing listens there
    else:
        assert probe.returncode == 0, probe.stderr
        assert json.loads(probe.stdout) == {"version": VERSION}  # through systemd's proxy


def run_verify(host) -> subprocess.CompletedProcess:
    """The role's verify probes (installer.py verify runs the same tasks)."""
    bindir = Path(sys.executable).parent
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    playbook = SCENARIO / "verify_probes.yml"
    return subprocess.run([str(bindir / "ansible-playbook"), "-i", str(inventory), "--limit", host.backend.host,
                           str(playbook)], text=True, capture_output=True, check=False, timeout=300)


def test_verify_fails_when_the_api_answers_where_it_should_not(host):
    only_on(host, "debian12")
    clean = run_verify(host)
    assert clean.returncode == 0, clean.stdout[-3000:]
    address = host.interface("eth0").addresses[0]
    host.check_output(f"systemd-run --unit=stray-api python3 -m http.server {PORT} --bind {address}")
    try:
        host.run(f"timeout 10 sh -c 'until ss -Htln \"sport = :{PORT}\" | grep -q {address}; do sleep 0.2; done'")
        stray = run_verify(host)
    finally:
        host.run("systemctl stop stray-api")
    assert stray.returncode != 0
    printed = " ".join(stray.stdout.split())
    assert f"Port {PORT} is listened on at" in printed and address in printed, printed[-3000:]
    assert "it should be 127.0.0.1, 172.31.0.1 only" in printed


MODELS = "/var/lib/ollama/models"
OFFLINE = SCENARIO / "standin-models"  # molecule.yml's ollama_models_src


def manifest(model: str) -> str:
    name, tag = model.split(":")
    return f"{MODELS}/manifests/registry.ollama.ai/library/{name}/{tag}"


def modified(host, path: str) -> str:
    """The file's modification time to the nanosecond: a pull or a copy rewrites it."""
    return host.check_output("stat -c %%y %s", path)


def model_names(host) -> set[str]:
    return {model["name"] for model in api(host, "/api/tags")["models"]}


def test_models_present_and_owned(host):
    assert {"qwen2:0.5b", "standin-offline:1b"} <= model_names(host)
    for path in (MODELS, manifest("qwen2:0.5b"), manifest("standin-offline:1b")):
        assert host.file(path).user == "ollama"
    assert host.file(MODELS).mode == 0o750


def test_the_offline_model_is_copied_and_the_other_pulled(host):
    """standin-offline:1b is the offline folder's, byte for byte (copied, not pulled); qwen2,
    which the folder lacks, is there, so it was pulled."""
    offline = "standin-offline:1b"
    copied = (OFFLINE / manifest(offline).removeprefix(f"{MODELS}/")).read_text()
    assert host.file(manifest(offline)).content_string == copied
    assert not (OFFLINE / manifest("qwen2:0.5b").removeprefix(f"{MODELS}/")).exists()
    assert "qwen2:0.5b" in model_names(host)


def test_unlisted_model_removed_only_when_asked_and_present_ones_never_fetched_again(host):
    """A model dropped from ollama_models stays, unless ollama_models_remove_unlisted; a model
    already present is neither pulled nor copied again (its manifest is not rewritten)."""
    only_on(host, "debian12")
    unlisted = "standin-offline:1b"
    listed_only = '{"ollama_models": ["qwen2:0.5b"], "ollama_models_src": ""}'
    present = modified(host, manifest("qwen2:0.5b"))
    try:
        kept = converge(host, listed_only)
        assert kept.returncode == 0, kept.stdout
        assert unlisted in model_names(host)
        removed = converge(host, listed_only, '{"ollama_models_remove_unlisted": true}')
        assert removed.returncode == 0, removed.stdout
        assert model_names(host) == {"qwen2:0.5b"}
        assert not host.file(manifest(unlisted)).exists
        assert modified(host, manifest("qwen2:0.5b")) == present
    finally:
        # molecule.yml's settings copy the offline model back.
        restore = converge(host)
        assert restore.returncode == 0, restore.stdout
    assert unlisted in model_names(host)
    assert modified(host, manifest("qwen2:0.5b")) == present


def test_wrong_checksum_fails_the_run(host):
    only_on(host, CHANGED_PLATFORM)
    pid = main_pid(host)
    run = converge(host, f"ollama_version={BUMPED}", "ollama_archive_sha256=" + "0" * 64)
    assert run.returncode != 0, run.stdout
    assert "does not match ollama_archive_sha256" in run.stdout
    assert not host.file(f"/opt/ollama/{BUMPED}").exists
    assert host.file("/opt/ollama/current").linked_to == f"/opt/ollama/{VERSION}"
    assert main_pid(host) == pid


@pytest.fixture(scope="module")
def changed(host):
    """One converge with a newer version and no app hosts; afterwards back to molecule.yml's."""
    only_on(host, CHANGED_PLATFORM)
    pid = main_pid(host)
    try:
        run = converge(host, f"ollama_version={BUMPED}", '{"ollama_app_hosts": []}')
        assert run.returncode == 0, run.stdout
        yield pid
    finally:
        restore = converge(host)
        assert restore.returncode == 0, restore.stdout
        assert api(host, "/api/version") == {"version": VERSION}
        assert probe_from_outside(host).returncode == 0


def test_version_bump_switches_and_restarts(host, changed):
    assert host.file("/opt/ollama/current").linked_to == f"/opt/ollama/{BUMPED}"
    assert api(host, "/api/version") == {"version": BUMPED}
    assert main_pid(host) != changed
    assert not host.file(f"/opt/ollama/{VERSION}").exists


def test_loopback_only_without_app_hosts(host, changed):
    assert f"OLLAMA_HOST=127.0.0.1:{PORT}" in host.check_output("systemctl show --value -p Environment ollama")
    assert probe_from_outside(host).returncode == 7, "loopback-only Ollama answered on the host's address"  # refused
    assert listening_addresses(host) == {"127.0.0.1"}
    assert not host.file("/etc/systemd/system/ollama-proxy.socket").exists
