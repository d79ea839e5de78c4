"""installer.py's commands (docs/design.md): install, validate, preflight, check, verify, backup, restore,
rollback, secrets, bundle verify."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.text import Text

from platformctl import bundle, bundle_build, bundle_plan, hostchecks, manifests, paths, report, runner, validation
from platformctl import inventory as inventories
from platformctl.errors import BadInput, ExitCode, InstallerError, PreflightFailed
from platformctl.events import OUTSIDE_ROLES, RunState
from platformctl.manifests import GIVEN
from platformctl.progress import Progress
from platformctl.runner import RunOptions, RunOutcome, new_run_id, output_tail, run_playbook
from platformctl.secrets import DEFAULT_FORMAT, SecretStore, generate

COMMANDS = {
    "install": "preflight, secrets, site.yml, verify, summary (the default)",
    "validate": "the checks that need no host (YAML, types, forms, names, secrets); exit 0 or 4",
    "preflight": "checks only; changes nothing on any host",
    "check": "drift report: site.yml in check and diff mode",
    "verify": "health probes of the running platform",
    "backup": "a backup now (PostgreSQL, Redis, then the files)",
    "restore": "point-in-time restore: --target-time 'YYYY-MM-DD HH:MM:SS+00' or --latest; --drill: a restore drill",
    "rollback": "rollback APP: the app's replicas go back to the image they replaced",
    "secrets": "create missing secrets; --rotate NAME replaces one; --set NAME stores a value you were given",
    "bundle": "an offline bundle of everything the inventory's install needs (--output FILE); "
              "bundle verify FILE: check one's signature and every file's sha256 (no inventory)",
}
# The commands that can take what they fetch from an offline bundle (--bundle).
BUNDLED_COMMANDS = ("install", "check", "verify", "preflight")
TARGET_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}(:?\d{2})?$")


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would exit 2, which means drift here
        raise BadInput(f"command line: {message}; see `python3 installer.py --help`")


def build_parser() -> Parser:
    parser = Parser(
        prog="installer.py",
        description="Install, check and verify the self-hosted AI platform on your servers.",
        epilog="commands:\n" + "\n".join(f"  {name:<10} {text}" for name, text in COMMANDS.items())
        + "\n\nexit codes: 0 ok, 1 a play failed or a host was unreachable, 2 check found drift, "
        "3 preflight failed, 4 bad input, 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", default="install", choices=list(COMMANDS), metavar="COMMAND")
    parser.add_argument("operands", nargs="*", metavar="ARG",
                        help="rollback: APP (a platform_apps name); bundle: verify FILE")
    parser.add_argument("-i", "--inventory", metavar="ENV|PATH",
                        help="an environment in inventories/ or the path of an inventory folder (every command "
                        "but bundle verify)")
    parser.add_argument("--limit", help="only these hosts or groups (Ansible pattern)")
    parser.add_argument("--tags", help="only tasks or roles with these tags (comma-separated)")
    parser.add_argument("--skip-tags", help="skip tasks or roles with these tags")
    parser.add_argument("-e", "--extra-vars", action="append", default=[], metavar="VARS",
                        help="key=value, YAML/JSON or @file; repeatable")
    parser.add_argument("--check", action="store_true", help="change nothing; report what would change")
    parser.add_argument("--diff", action="store_true", help="show file differences")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more Ansible output in the run log")
    parser.add_argument("--yes", action="store_true", help="never prompt")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write a machine-readable summary")
    parser.add_argument("--target-time", help="restore: 'YYYY-MM-DD HH:MM:SS+00'")
    parser.add_argument("--latest", action="store_true", help="restore: to the end of the archived WAL")
    parser.add_argument("--drill", action="store_true",
                        help="restore: the newest backup into a scratch instance, checked; the server is not touched")
    parser.add_argument("--rotate", metavar="NAME", help="secrets: replace this secret")
    parser.add_argument("--set", metavar="NAME", dest="set_secret",
                        help="secrets: store this secret's value, read from the terminal or standard input")
    parser.add_argument("--bundle", type=Path, metavar="FILE",
                        help="install, check, verify, preflight: take every package, image, release and model "
                        "from this offline bundle, not the network (with --fingerprint)")
    parser.add_argument("--fingerprint", metavar="FPR",
                        help="bundle verify, --bundle: the bundle key's fingerprint, as the build printed it")
    parser.add_argument("--output", type=Path, metavar="FILE", help="bundle: the archive to write (a new file)")
    parser.add_argument("--release", action="append", default=[], metavar="N",
                        help="bundle: a Debian major version the hosts run (repeatable; default: every supported one)")
    parser.add_argument("--build-image", action="append", default=[], metavar="N=IMAGE",
                        help="bundle: the clean image of Debian N its packages are resolved in "
                        "(default debian:CODENAME-slim)")
    parser.add_argument("--model-registry", metavar="URL",
                        help="bundle: where models named without a registry come from, where the inventory sets "
                        f"no ollama_models_src (default {bundle_build.DEFAULT_MODEL_REGISTRY}; a mirror of it)")
    return parser


def parse_operands(args: argparse.Namespace) -> None:
    """The positional words after the command: rollback's app, bundle's action and file."""
    operands, args.app, args.bundle_file = args.operands, None, None
    if args.command == "bundle" and operands:
        if len(operands) != 2 or operands[0] != "verify":
            raise BadInput("command line: `installer.py bundle --inventory ENV --output FILE` builds a bundle, "
                           "`installer.py bundle verify FILE [--fingerprint FPR]` checks one")
        args.bundle_file = Path(operands[1])
    elif args.command == "rollback" and len(operands) == 1:
        args.app = operands[0]
    elif args.command == "rollback" or operands:
        raise BadInput("command line: rollback takes the name of one app (`installer.py rollback APP --inventory ENV`)"
                       if args.command == "rollback" else f"command line: {operands[0]}: only rollback takes an app")
    if args.bundle_file is None and not args.inventory:
        raise BadInput("command line: the following arguments are required: -i/--inventory "
                       "(an environment in inventories/ or the path of an inventory folder)")
    if args.bundle and args.command not in BUNDLED_COMMANDS:
        raise BadInput(f"command line: --bundle goes with {', '.join(BUNDLED_COMMANDS)}")
    if args.bundle and not args.fingerprint:
        raise BadInput("command line: --bundle needs --fingerprint FPR, the bundle key's fingerprint as the build "
                       "printed it (a bundle is trusted by that alone)")
    if args.fingerprint and args.bundle_file is None and not args.bundle:
        raise BadInput("command line: --fingerprint goes with bundle verify and --bundle")
    building = args.command == "bundle" and args.bundle_file is None
    for option, value in (("--output", args.output), ("--release", args.release), ("--build-image", args.build_image),
                          ("--model-registry", args.model_registry)):
        if value and not building:
            raise BadInput(f"command line: {option} goes with bundle (the build)")
    if building and not args.output:
        raise BadInput("command line: bundle needs --output FILE, the archive to write")


def parse(argv: list[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    parse_operands(args)
    if args.command != "restore" and (args.target_time or args.latest or args.drill):
        raise BadInput("command line: --target-time, --latest and --drill go with the restore command")
    if args.command == "restore":
        if [bool(args.target_time), args.latest, args.drill].count(True) != 1:
            raise BadInput("command line: restore needs exactly one of --target-time 'YYYY-MM-DD HH:MM:SS+00', "
                           "--latest and --drill")
        if args.target_time and not TARGET_TIME.match(args.target_time):
            raise BadInput(f"command line: --target-time {args.target_time!r}: expected 'YYYY-MM-DD HH:MM:SS+00'")
    for option, value in (("--rotate", args.rotate), ("--set", args.set_secret)):
        if value and args.command != "secrets":
            raise BadInput(f"command line: {option} goes with the secrets command")
    if args.rotate and args.set_secret:
        raise BadInput("command line: --rotate and --set: one secret at a time, one way at a time")
    return args


@dataclass
class Session:
    """What every command works from: the checked inventory, the roles its hosts get, the secrets."""

    args: argparse.Namespace
    console: Console
    inventory: inventories.Inventory
    loaded: inventories.LoadedInventory
    documents: dict
    roles: dict[str, set[str]]
    store: SecretStore
    outcomes: list[tuple[str, RunOutcome, RunState]] = field(default_factory=list)
    facts: Path | None = None  # this command's fact cache (RunOptions.fact_cache)

    @property
    def options(self) -> RunOptions:
        a = self.args
        return RunOptions(limit=a.limit, tags=a.tags, skip_tags=a.skip_tags, extra_vars=list(a.extra_vars),
                          check=a.check, diff=a.diff, verbosity=a.verbose, fact_cache=self.facts)

    def wanted_secrets(self) -> dict[str, str]:
        """Name -> format of every secret: those of the roles that run on at least one host
        (a role whose group is empty needs none) and each app's secret_env."""
        applied = set().union(*self.roles.values())
        wanted = manifests.secrets_of(manifests.load_all(), applied)
        for app in self.apps():
            formats = app.get("secret_formats") or {}
            wanted.update((str(name), formats.get(name, DEFAULT_FORMAT)) for name in app.get("secret_env") or [])
        return wanted

    def apps(self) -> list[dict]:
        """Every host's platform_apps items (checked by open_session), once each."""
        apps = {}
        for host in self.loaded.hosts("all"):
            for app in self.loaded.host_vars(host).get("platform_apps") or []:
                apps.setdefault(app["name"], app)
        return list(apps.values())

    def check_given_secrets(self) -> None:
        """A secret the operator was given must be in the vault before anything runs."""
        present = self.store.load()
        missing = [(app["name"], name) for app in self.apps() for name, secret_format in
                   (app.get("secret_formats") or {}).items() if secret_format == GIVEN and name not in present]
        if missing:
            shown = self.inventory.display_path(self.store.file)
            raise BadInput(*(f"platform_apps[{app}].secret_formats.{name}: given, and not in {shown} yet; store it "
                             f"with `python3 installer.py secrets --set {name} --inventory {self.args.inventory}`"
                             for app, name in missing))


def open_session(args: argparse.Namespace, console: Console) -> Session:
    """Everything that needs no host: inventory, YAML, collections, variable types. Changes nothing."""
    inventory = inventories.resolve(args.inventory)
    documents = inventories.check_yaml(inventory)
    if args.bundle:
        console.print(f"bundle: checking {args.bundle} (its signature and every file's sha256)", highlight=False)
        pinned = bundle.normal_fingerprint(args.fingerprint)
        folder = bundle.unpacked(args.bundle, pinned, paths.BUNDLES)
        args.extra_vars.append(json.dumps(bundle.install_settings(folder, pinned)))
        console.print(f"bundle: packages, images, the Ollama release and models come from {folder}",
                      highlight=False)
    store = SecretStore(inventory)
    loaded = inventories.load(inventory, args.extra_vars, store.password_file)
    try:
        roles = validation.applied_roles(loaded)
    except manifests.ManifestError as err:
        raise BadInput(str(err)) from None
    validation.check_collections()
    from ansible.utils.vars import load_extra_vars

    extra_names = set(load_extra_vars(loaded.loader))
    validation.check_variables(loaded, documents, extra_names, args.limit)
    if args.limit and not loaded.hosts("all", args.limit):
        raise BadInput(f"--limit {args.limit}: matches no host of {inventory.display_path(inventory.hosts_file)}")
    session = Session(args=args, console=console, inventory=inventory, loaded=loaded, documents=documents,
                      roles=roles, store=store)
    if args.command not in ("secrets", "bundle"):  # a bundle holds no secret
        session.check_given_secrets()
    return session


@contextlib.contextmanager
def exclusive(inventory: inventories.Inventory) -> Iterator[None]:
    """One run at a time per inventory: two installers on the same hosts would fight over apt and files."""
    lock_file = paths.lock_dir() / f"{inventory.path.name}-{inventory.tag}.lock"
    # Never through a link someone left at that name, and never readable by others.
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "r+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise InstallerError(f"another installer.py run uses this inventory ({holder}); "
                                 "wait for it to end, or stop it") from None
        left = runner.playbooks_left_running(inventory.hosts_file)
        if left:
            pids = " ".join(map(str, left))
            raise InstallerError(f"ansible-playbook (pid {pids}) of an earlier installer.py run that was killed still "
                                 f"works on these hosts; wait for it to end, or stop it (`kill {pids}`), then run "
                                 "the same command again")
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        lock.flush()
        yield


@contextlib.contextmanager
def interruptible() -> Iterator[threading.Event]:
    """First Ctrl-C: stop the run after ansible-runner ends the playbook cleanly. Second: stop now."""
    cancel = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\ninterrupted: stopping the run (Ctrl-C again to stop at once)", file=sys.stderr)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield cancel
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(session: Session, playbook: str, title: str, *, check: bool | None = None,
        extra_vars: list[str] | None = None, whole: bool = False) -> tuple[RunOutcome, RunState]:
    """Run a playbook with the command line's options; `whole`: every tag, not --tags/--skip-tags."""
    options = session.options
    if whole:
        options.tags = options.skip_tags = None
    if check is not None:
        options.check = check
        options.diff = options.diff or check
    options.extra_vars += extra_vars or []
    state = RunState(mask=session.store.mask())
    with interruptible() as cancel, Progress(session.console, state, title) as progress:
        outcome = run_playbook(
            paths.PLAYBOOKS / playbook, session.inventory.hosts_file, options, state,
            run_id=new_run_id(title.split(maxsplit=1)[0]), on_event=progress.on_event, cancel=cancel,
            vault_password_file=session.store.password_file,
        )
    session.outcomes.append((title, outcome, state))
    if outcome.interrupted:
        raise Interrupted
    if state.argument_errors:
        raise BadInput(*state.argument_errors)
    if outcome.rc != 0 and not state.failures and not state.stats:
        raise InstallerError(f"{playbook} did not run (ansible-playbook exit {outcome.rc}):",
                             output_tail(outcome.run_dir))
    return outcome, state


class Interrupted(InstallerError):
    exit_code = ExitCode.INTERRUPTED

    def __init__(self) -> None:
        super().__init__("interrupted; nothing is left half-written: run the same command again to finish")


def run_failed(state: RunState) -> bool:
    return bool(state.failures) or any(h["failed"] or h["unreachable"] for h in state.stats.values())


def exit_code(command: str, state: RunState) -> ExitCode:
    """The contract's exit code for a finished run of `command`."""
    if run_failed(state):
        return ExitCode.PREFLIGHT_FAILED if command == "preflight" else ExitCode.FAILED
    if command == "check" and state.changes:
        return ExitCode.DRIFT
    return ExitCode.OK



def host_preflight(session: Session) -> None:
    """Probe every host (read only), then judge what was found; exit 3 on any fatal problem."""
    if session.args.bundle:
        bundle_holds_the_install(session)
    with temporary_secrets(session) as extra:
        outcome, state = run(session, "preflight.yml", "preflight", check=False, extra_vars=extra)
    problems = hostchecks.judge(state.facts, session.loaded)
    fatal = run_failed(state) or any(p.fatal for p in problems)
    if problems:
        session.console.print(report.problems_table(problems))
    if session.args.command == "preflight" or fatal:
        code = ExitCode.PREFLIGHT_FAILED if fatal else ExitCode.OK
        finish(session, "preflight", outcome, state, code=code, steps=[], problems=problems)
    if fatal:
        raise PreflightFailed("preflight failed (see above); nothing was changed")


def bundle_holds_the_install(session: Session) -> None:
    """Before any host is probed: every package, image, release and model the inventory's
    install needs is in the bundle (--bundle)."""
    folder = Path(session.loaded.host_vars(session.loaded.hosts()[0])["platform_bundle_dir"])
    described = json.loads((folder / bundle_build.PLAN_FILE).read_text())
    lacking = bundle_plan.missing(bundle_plan.make(session.loaded, described["releases"]), described["plan"])
    if lacking:
        raise PreflightFailed(*(f"--bundle {session.args.bundle} lacks {what}: build it again from this inventory "
                                "(installer.py bundle)" for what in lacking))
    session.console.print(f"bundle: holds every package, image, release and model this inventory's install needs "
                          f"(Debian {', '.join(described['releases'])})", highlight=False)


def finish(session: Session, command: str, outcome: RunOutcome, state: RunState, *, code: int,
           steps: list[str], problems: list[hostchecks.Problem] | None = None,
           details: dict | None = None) -> int:
    report.print_end(session.console, command, state, outcome, steps)
    if session.args.json:
        document = report.summary(command, session.inventory.name, outcome, state, code)
        if problems is not None:
            document["problems"] = [vars(p) for p in problems]
        document.update(details or {})
        report.write_json(session.args.json, document)
    return code


def cmd_install(session: Session) -> int:
    host_preflight(session)
    ensure_secrets(session)
    outcome, state = run(session, "site.yml", "install")
    if run_failed(state):
        return finish(session, "install", outcome, state, code=ExitCode.FAILED,
                      steps=["Fix what failed above, then run the same command again: it picks up where it stopped."])
    _, verify_state, code = verified(session)
    return finish(session, "install", outcome, state, code=code, steps=next_steps(session),
                  details={"probes": report.probes(verify_state)})


def next_steps(session: Session) -> list[str]:
    inv = session.args.inventory
    edge = session.loaded.hosts("edge")
    steps = []
    if edge:
        domain = session.loaded.host_vars(edge[0]).get("platform_domain") or edge[0]
        steps.append(f"Platform: https://{domain}/")
    if session.store.file.is_file():
        steps.append(f"Credentials: {session.inventory.display_path(session.store.file)} (vault password in "
                     f"{session.store.password_file}); view with `ansible-vault view --vault-password-file "
                     f"{session.store.password_file} {session.inventory.display_path(session.store.file)}`")
        steps.append(f"Keep a copy of {session.store.password_file} off the platform's hosts: without it the "
                     "vault, and the backups encrypted with its secrets, cannot be read.")
    steps += local_backup_warnings(session)
    steps.append(f"Next: `python3 installer.py check --inventory {inv}` finds drift at any time; "
                 f"`python3 installer.py verify --inventory {inv}` probes every service.")
    return steps


def _setting(session: Session, host: str, role: str, key: str):
    host_vars = session.loaded.host_vars(host)
    return host_vars[key] if key in host_vars else manifests.role_default(role, key)


def local_backup_warnings(session: Session) -> list[str]:
    """The backups kept only on the host they protect, which its loss would take along."""
    warnings = []
    # A host of group backup holds PostgreSQL's repository (the backup_repository role).
    repository_hosts = session.loaded.hosts("backup")
    for host in [] if repository_hosts else session.loaded.hosts("postgres"):
        if not _enabled(_setting(session, host, "postgresql", "postgresql_pgbackrest_s3_enabled")):
            path = _setting(session, host, "postgresql", "postgresql_pgbackrest_repo_path")
            warnings.append(f"Warning: {host} keeps its only PostgreSQL backups on itself ({path}): losing the host "
                            "loses them. Add a backup repository host (group backup) or an off-site repository "
                            "(postgresql_pgbackrest_s3_enabled and its settings).")
    # The backup role's repository: the repository host's when it is another host, else the
    # S3 store, which defaults to PostgreSQL's (roles/backup/defaults/main.yml).
    local = [host for host in session.loaded.hosts() if "backup" in session.roles.get(host, ())
             and not set(repository_hosts) - {host}
             and not _enabled(session.loaded.host_vars(host).get(
                 "backup_s3_enabled", session.loaded.host_vars(host).get("postgresql_pgbackrest_s3_enabled")))]
    if local:
        folder = _setting(session, local[0], "backup", "backup_local_repository")
        keep, selves = ("keeps", "itself") if len(local) == 1 else ("keep", "themselves")
        warnings.append(f"Warning: {', '.join(local)} {keep} the backups of their files (configuration, Redis "
                        f"snapshots, app volumes) on {selves} ({folder}): losing a host loses them. Add a "
                        "backup repository host (group backup) or an S3 store (backup_s3_enabled and its "
                        "settings, or PostgreSQL's off-site repository).")
    return warnings


def _enabled(value) -> bool:
    return str(value).lower() in ("true", "yes", "1")


def cmd_check(session: Session) -> int:
    with temporary_secrets(session) as extra:
        outcome, state = run(session, "site.yml", "check", check=True, extra_vars=extra)
    code = exit_code("check", state)
    steps = [f"{len(state.changes)} drifted item(s); `python3 installer.py --inventory {session.args.inventory}` "
             "repairs them." if state.changes else "No drift."]
    published = publish_drift(session, state)
    return finish(session, "check", outcome, state, code=code, steps=steps, details={"drift_published": published})


def drift_report(state: RunState, now: float) -> dict[str, dict]:
    """Per checked host: drifted items by role (every role that was checked, 0 included), when,
    and whether every role could be checked."""
    report = {}
    for host in sorted({r.host for r in state.task_results} | set(state.stats)):
        roles = {r.role or OUTSIDE_ROLES for r in state.task_results if r.host == host}
        items = Counter(c.role or OUTSIDE_ROLES for c in state.changes if c.host == host)
        counts = state.stats.get(host, {})
        finished = bool(counts) and not counts["failed"] and not counts["unreachable"]
        report[host] = {"roles": {role: items.get(role, 0) for role in sorted(roles | set(items))},
                        "success": finished and not any(f.host == host for f in state.failures), "time": int(now)}
    return report


def publish_drift(session: Session, state: RunState) -> bool:
    """Leave a whole check's result on each checked host for the monitoring role's alerts
    (node exporter's textfile collector). A check narrowed by tags says nothing of the rest."""
    if not session.loaded.groups().get("monitoring") or session.args.tags or session.args.skip_tags:
        return False
    document = json.dumps({"platform_drift_report": drift_report(state, time.time())})
    _, published = run(session, "site.yml", "drift report", check=False, whole=True,
                       extra_vars=["platform_action=drift", document])
    if run_failed(published):
        session.console.print("warning: the drift report could not be left on every host (see above)",
                              style="yellow", highlight=False)
    return not run_failed(published)


@contextlib.contextmanager
def temporary_secrets(session: Session) -> Iterator[list[str]]:
    """check changes nothing, not even the secrets file: missing secrets go to a temporary vault file."""
    wanted = session.wanted_secrets()
    current = session.store.load()
    if set(wanted) <= set(current):
        yield []
        return
    values = {**current, **{name: generate(wanted[name]) for name in set(wanted) - set(current)}}
    with tempfile.NamedTemporaryFile(prefix="platformctl-secrets-", suffix=".yml") as handle:
        os.chmod(handle.name, 0o600)
        handle.write(session.store.encrypted(values))
        handle.flush()
        yield [f"@{handle.name}"]


def ensure_secrets(session: Session) -> None:
    written = session.store.ensure(session.wanted_secrets(), rotate=session.args.rotate)
    if written:
        session.console.print(f"secrets: created {', '.join(written)} in "
                               f"{session.inventory.display_path(session.store.file)}", highlight=False)
    if session.store.created_password:
        session.console.print(f"secrets: vault password kept in {session.store.password_file} (mode 0600); "
                              "back it up: the secrets cannot be read without it", highlight=False)


def cmd_validate(session: Session) -> int:
    """open_session did the checks; what is left is whether the secrets can be read or made."""
    present = session.store.load()
    missing = sorted(set(session.wanted_secrets()) - set(present))
    hosts = session.loaded.hosts("all", session.args.limit)
    roles = sorted(set().union(*session.roles.values()))
    session.console.print(f"Inventory {session.args.inventory} is valid: {len(hosts)} host(s), roles "
                          f"{', '.join(roles)}; {len(present)} secret(s) in the vault"
                          + (f", {len(missing)} to be generated by the install ({', '.join(missing)})"
                             if missing else "") + ".", highlight=False)
    return ExitCode.OK


def cmd_preflight(session: Session) -> int:
    host_preflight(session)
    session.console.print("Preflight passed.")
    return ExitCode.OK


def verified(session: Session) -> tuple[RunOutcome, RunState, ExitCode]:
    """Run every probe (a failed probe does not stop the others) and print the results table."""
    outcome, state = run(session, "verify.yml", "verify", check=False)
    session.console.print(report.verify_table(state))
    failed = any(r.status in ("failed", "unreachable") for r in state.task_results)
    return outcome, state, ExitCode.FAILED if failed else exit_code("verify", state)


def cmd_verify(session: Session) -> int:
    outcome, state, code = verified(session)
    return finish(session, "verify", outcome, state, code=code, steps=["All probes passed." if not code else
                  "Probes failed above; `installer.py check` shows drift, a new install repairs it."])


def cmd_secrets(session: Session) -> int:
    for option, name in (("--set", session.args.set_secret), ("--rotate", session.args.rotate)):
        kept = manifests.kept_encrypted_by(manifests.load_all()).get(name or "")
        if kept:
            raise BadInput(f"{option} {name}: it encrypts {kept}, which a new value could not read; it is not "
                           "replaced")
    if session.args.set_secret:
        return set_secret(session, session.args.set_secret)
    if session.args.rotate and not confirm(session, f"Replace secret {session.args.rotate}? The next install "
                                           "applies the new value everywhere it is used."):
        return ExitCode.OK
    ensure_secrets(session)
    session.console.print(f"secrets: {len(session.store.load())} in "
                          f"{session.inventory.display_path(session.store.file)}", highlight=False)
    return ExitCode.OK


def set_secret(session: Session, name: str) -> int:
    wanted = session.wanted_secrets()
    if name not in wanted:
        hint = validation.nearest(name, wanted)
        raise BadInput(f"--set {name}: no secret of that name in this inventory; "
                       + (f"did you mean {hint[0]}?" if hint else f"expected one of: {', '.join(sorted(wanted))}"))
    if sys.stdin.isatty():
        value = getpass.getpass(f"Value of {name} (not shown): ")
    else:
        value = sys.stdin.read().removesuffix("\n")
    session.store.set(name, value, wanted[name])
    session.console.print(f"secrets: {name} stored in {session.inventory.display_path(session.store.file)}; "
                          "the next install applies it", highlight=False)
    return ExitCode.OK


def cmd_backup(session: Session) -> int:
    outcome, state = run(session, "backup.yml", "backup", check=False)
    code = exit_code("backup", state)
    # The backup role records, per host, the snapshot of the files it took (or why not).
    files = state.reports("backup_files_report")
    return finish(session, "backup", outcome, state, code=code,
                  steps=[str(report.get("summary", "")) for report in files.values()], details={"files": files})


def cmd_restore_drill(session: Session) -> int:
    outcome, state = run(session, "restore_drill.yml", "restore", check=False)
    # The drill records its figures per database host, failed or not.
    drills = state.reports("postgresql_restore_drill_report")
    steps = [str(report.get("summary", "")) for report in drills.values()]
    return finish(session, "restore", outcome, state, code=exit_code("restore", state), steps=steps,
                  details={"drills": drills})


def cmd_restore(session: Session) -> int:
    if session.args.drill:
        return cmd_restore_drill(session)
    target = session.args.target_time or "the latest archived point"
    if not confirm(session, f"Restore PostgreSQL to {target}? Apps that use it stop until it is done."):
        return ExitCode.OK
    extra = [f"restore_target_time='{session.args.target_time}'"] if session.args.target_time \
        else ["restore_latest=true"]
    outcome, state = run(session, "restore.yml", "restore", check=False, extra_vars=extra)
    code = exit_code("restore", state)
    # restore.yml's last play records what it restored to, per restored host (a cluster: its leader).
    restored = state.reports("restore_report")
    steps = [str(r.get("summary", "")) for r in restored.values()]
    return finish(session, "restore", outcome, state, code=code, steps=steps, details={"restored": restored})


def cmd_rollback(session: Session) -> int:
    name = session.args.app
    apps = {app["name"]: app for app in session.apps()}
    if name not in apps:
        hint = validation.nearest(name, apps)
        raise BadInput(f"rollback {name}: no such app in platform_apps; "
                       + (f"did you mean {hint[0]}?" if hint else f"expected one of: {', '.join(apps) or 'none'}"))
    if not confirm(session, f"Return every replica of {name} to the image it replaced?"):
        return ExitCode.OK
    outcome, state = run(session, "rollback.yml", "rollback", check=False,
                         extra_vars=[json.dumps({"rollback_app": name})])
    code = exit_code("rollback", state)
    done = state.reports("app_rollback_report")
    steps = []
    if done and not code:
        images = sorted({report["image"] for report in done.values()})
        steps = [f"{name} is back on {', '.join(images)} on {', '.join(sorted(done))}.",
                 f"The inventory still names {apps[name]['image']} (platform_apps[{name}].image): set it to "
                 f"{images[0]} there, or the next install deploys {apps[name]['image']} again."]
    return finish(session, "rollback", outcome, state, code=code, steps=steps, details={"rolled_back": done})


def confirm(session: Session, question: str) -> bool:
    if session.args.yes:
        return True
    if not sys.stdin.isatty():
        raise BadInput(f"command line: {question} needs --yes when not run from a terminal")
    return session.console.input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_bundle_verify(args: argparse.Namespace, console: Console) -> int:
    pinned = bundle.normal_fingerprint(args.fingerprint) if args.fingerprint else None
    console.print(f"bundle: checking {args.bundle_file} (every file's sha256)", highlight=False)
    verdict = bundle.verify(args.bundle_file, pinned)
    if verdict.problems:
        raise BadInput(*(f"{args.bundle_file}: {problem}" for problem in verdict.problems))
    console.print(f"bundle: {verdict.files} files, {verdict.size / 1e6:.1f} MB, as the manifest lists them; "
                  f"signed by {verdict.fingerprint}", highlight=False)
    if not verdict.pinned:
        console.print("bundle: no --fingerprint given: compare the key above with the one the build printed",
                      highlight=False)
    return ExitCode.OK


def cmd_bundle(session: Session) -> int:
    args, console = session.args, session.console
    releases = list(dict.fromkeys(args.release)) or bundle_plan.supported_releases()
    build_images = {}
    for given in args.build_image:
        release, _, image = given.partition("=")
        if release not in releases or not image:
            raise BadInput(f"--build-image {given}: expected N=IMAGE with N one of the bundle's releases "
                           f"({', '.join(releases)})")
        build_images[release] = image
    plan = bundle_plan.make(session.loaded, releases)
    refused = bundle_plan.not_bundled(plan)
    if refused:
        raise BadInput(*(f"{session.inventory.path}: {problem}" for problem in refused))
    count = {release: sum(len(names) for names in by_repository.values())
             for release, by_repository in plan.packages.items()}
    console.print(f"bundle: {session.inventory.path.name}: packages of Debian "
                  + ", ".join(f"{release} ({n})" for release, n in count.items())
                  + f"; {len(plan.images)} app images"
                  + (f"; Ollama and {len(plan.ollama_models)} models" if plan.ollama_archive else ""), highlight=False)
    registry = args.model_registry or bundle_build.DEFAULT_MODEL_REGISTRY
    if not registry.startswith(("https://", "http://")):
        raise BadInput(f"--model-registry {registry}: expected a URL (https://HOST)")
    if args.model_registry and plan.ollama_models_src:
        raise BadInput(f"--model-registry {registry}: the inventory's ollama_models_src ({plan.ollama_models_src}) "
                       "gives the models; leave one of them out")
    fingerprint, components = bundle_build.build(plan, args.output, releases, build_images,
                                                 lambda line: console.print(f"bundle: {line}", highlight=False),
                                                 model_registry=registry)
    console.print(report.bundle_table(components))
    console.print(f"Bundle: {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)", highlight=False)
    console.print(f"Bundle key fingerprint: {fingerprint}", highlight=False)
    console.print("Carry the fingerprint apart from the bundle (it is how the site knows the bundle is yours): "
                  f"`python3 installer.py bundle verify {args.output} --fingerprint {fingerprint}` checks it there.",
                  highlight=False, markup=False)
    if args.json:
        report.write_json(args.json, {"command": "bundle", "output": str(args.output), "fingerprint": fingerprint,
                                      "components": [{"name": c.name, "files": len(c.files), "bytes": c.bytes,
                                                      "seconds": round(c.seconds, 1)} for c in components]})
    return ExitCode.OK


HANDLERS = {"install": cmd_install, "preflight": cmd_preflight, "check": cmd_check, "verify": cmd_verify,
            "backup": cmd_backup, "restore": cmd_restore, "secrets": cmd_secrets, "rollback": cmd_rollback,
            "bundle": cmd_bundle}


def main(argv: list[str] | None = None) -> int:
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        args = parse(sys.argv[1:] if argv is None else argv)
        if args.command == "install" and args.check:
            args.command = "check"
        if args.bundle_file is not None:  # a file, no inventory, no host
            return int(cmd_bundle_verify(args, console))
        session = open_session(args, console)
        if args.command == "validate":  # touches no host and writes nothing: no lock to take
            return int(cmd_validate(session))
        with exclusive(session.inventory), tempfile.TemporaryDirectory(prefix="platformctl-facts-") as facts:
            session.facts = Path(facts)
            return int(HANDLERS[args.command](session))
    except InstallerError as err:
        for message in err.messages:
            errors.print(Text("error: ", style="bold red").append(message, style=""))
        return int(err.exit_code)
    except KeyboardInterrupt:
        errors.print(Text("interrupted", style="bold red"))
        return int(ExitCode.INTERRUPTED)
