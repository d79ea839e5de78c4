"""Records the ansible-runner event streams the unit tests replay.

    .venv/bin/python tests/unit/events/record.py

Runs the small playbooks in playbooks/ on localhost (they only touch a temporary folder)
through the installer's own runner and writes each stream to <name>.jsonl."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from platformctl.events import RunState  # noqa: E402
from platformctl.runner import RunOptions, run_playbook  # noqa: E402

RECORDINGS = {
    # name: (playbook, check mode, extra vars)
    "converge": ("converge.yml", False, []),
    "reconverge": ("converge.yml", False, []),
    "drift": ("converge.yml", True, ["sample_content='edited by hand'"]),
    "failure": ("failure.yml", False, []),
    "bad_argument": ("converge.yml", False, ["sample_settings=notadict"]),
}


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="platformctl-record-"))
    inventory = workdir / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    web-1:\n      ansible_connection: local\n"
                         "      ansible_python_interpreter: /usr/bin/python3\n    db-1:\n"
                         "      ansible_connection: local\n      ansible_python_interpreter: /usr/bin/python3\n")
    for name, (playbook, check, extra) in RECORDINGS.items():
        events: list[dict] = []
        options = RunOptions(check=check, diff=True, extra_vars=[f"sample_dir={workdir}", *extra])
        run_playbook(HERE / "playbooks" / playbook, inventory, options, RunState(),
                     run_id=f"record-{name}", on_event=events.append)
        with (HERE / f"{name}.jsonl").open("w", encoding="utf-8") as out:
            for event in events:
                out.write(json.dumps(event, sort_keys=True) + "\n")
        print(f"{name}: {len(events)} events")


if __name__ == "__main__":
    main()
