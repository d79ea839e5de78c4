"""Runs a playbook through ansible-runner: every event goes, secrets masked, to the run's state
(platformctl/events.py) and the display before ansible-runner writes it to the run folder."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from platformctl import paths
from platformctl.events import RunState, identity, masked

RUNS_KEPT = 20


@dataclass
class RunOptions:
    limit: str | None = None
    tags: str | None = None
    skip_tags: str | None = None
    extra_vars: list[str] = field(default_factory=list)
    check: bool = False
    diff: bool = False
    verbosity: int = 0
    # Facts shared by the runs of one installer command (preflight, site.yml, verify):
    # with ansible.cfg's `gathering = smart`, each host's facts are gathered once.
    fact_cache: Path | None = None


def mask_file(file: Path, mask: Callable[[str], str]) -> None:
    """Mask the secrets in a text file the run wrote (the run log)."""
    if mask is identity or not file.is_file():
        return
    text = file.read_text(encoding="utf-8", errors="replace")
    hidden = mask(text)
    if hidden != text:
        file.write_text(hidden, encoding="utf-8")


@dataclass
class RunOutcome:
    status: str
    rc: int
    run_dir: Path
    interrupted: bool


def new_run_id(command: str) -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{command}-{os.getpid()}"


def run_playbook(
    playbook: Path, inventory_file: Path, options: RunOptions, state: RunState, *,
    run_id: str, on_event: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None, vault_password_file: Path | None = None,
) -> RunOutcome:
    """Run one playbook; every event goes to `state`, then to `on_event` (the display)."""
    import ansible_runner

    args = ["-i", str(inventory_file)]
    for item in options.extra_vars:
        args += ["-e", item]
    if options.limit:
        args += ["--limit", options.limit]
    if options.tags:
        args += ["--tags", options.tags]
    if options.skip_tags:
        args += ["--skip-tags", options.skip_tags]
    if options.check:
        args.append("--check")
    if options.diff:
        args.append("--diff")
    if vault_password_file and vault_password_file.is_file():
        args += ["--vault-password-file", str(vault_password_file)]
    if options.verbosity:
        args.append("-" + "v" * options.verbosity)

    def handle(event: dict) -> bool:
        # ansible-runner writes this same dict to the run folder once we return.
        event.update(masked(event, state.mask))
        state.handle(event)
        if on_event:
            on_event(event)
        return True

    paths.RUNS.mkdir(parents=True, exist_ok=True)
    # ansible-playbook is beside the Python that runs us (the venv), active or not.
    bin_dir = str(Path(sys.executable).parent)
    envvars = {"PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
               "ANSIBLE_CONFIG": str(paths.ANSIBLE_CFG), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
               "ANSIBLE_ROLES_PATH": str(paths.ROLES),
               # ansible-runner turns host key checking off unless this is set.
               "ANSIBLE_HOST_KEY_CHECKING": os.environ.get("ANSIBLE_HOST_KEY_CHECKING", "True")}
    cancel = cancel or threading.Event()
    masking, stopping = masked_afterwards(paths.RUNS / run_id, state.mask), stopped_when_interrupted(inventory_file)
    with masking, tempfile.TemporaryDirectory(prefix="platformctl-") as private, stopping:
        result = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(paths.ROOT),
            playbook=str(playbook),
            cmdline=shlex.join(args),
            artifact_dir=str(paths.RUNS),
            ident=run_id,
            rotate_artifacts=RUNS_KEPT,
            envvars=envvars,
            event_handler=handle,
            cancel_callback=cancel.is_set,
            quiet=True,
            suppress_env_files=True,
            json_mode=False,
            timeout=None,
            settings={"suppress_ansible_output": True},
            fact_cache=str(options.fact_cache) if options.fact_cache else None,
        )
    interrupted = cancel.is_set() or result.status == "canceled"
    if interrupted:
        stop_left_playbooks(inventory_file)
    return RunOutcome(status=result.status, rc=result.rc, run_dir=paths.RUNS / run_id, interrupted=interrupted)


@contextlib.contextmanager
def masked_afterwards(run_dir: Path, mask: Callable[[str], str]) -> Iterator[None]:
    """However the run ends (a second Ctrl-C too): the run log masked, and the raw events
    ansible-runner had not yet handled (and masked) removed."""
    try:
        yield
    finally:
        mask_file(run_dir / "stdout", mask)
        for partial in (run_dir / "job_events").glob("*-partial.json*"):
            partial.unlink(missing_ok=True)


@contextlib.contextmanager
def stopped_when_interrupted(inventory_file: Path) -> Iterator[None]:
    """A second Ctrl-C leaves ansible-runner at once: its ansible-playbook must end too."""
    try:
        yield
    except KeyboardInterrupt:
        stop_left_playbooks(inventory_file)
        raise


def stop_left_playbooks(inventory_file: Path, grace: float = 10.0) -> None:
    """After a cancel, ansible-runner kills ansible-playbook's process group; but Ansible runs
    each worker in a session of its own, so a worker in the middle of a task lives on and goes
    on changing the host. Stop each as ansible-playbook would (SIGTERM: the worker ends its
    module's processes too), and for good after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        left = playbooks_left_running(inventory_file)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = playbooks_left_running(inventory_file)
        if not left:
            return


def playbooks_left_running(inventory_file: Path) -> list[int]:
    """ansible-playbook processes still working on this inventory although no installer.py
    holds it: a killed installer leaves its ansible-playbook running (ansible-runner starts it
    in a session of its own). Their main processes, not their workers; Linux only (/proc)."""
    wanted = str(inventory_file).encode()
    found: dict[int, int] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if wanted in args and any(arg.endswith(b"ansible-playbook") for arg in args):
            found[int(proc.name)] = parent
    return sorted(pid for pid, parent in found.items() if parent not in found)


def output_tail(run_dir: Path, lines: int = 8) -> str:
    """The last lines ansible printed: the reason when a run failed before any task did."""
    text = ""
    for name in ("stdout", "stderr"):
        file = run_dir / name
        if file.is_file():
            text += file.read_text(encoding="utf-8", errors="replace")
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
