"""From a recorded event stream to the run's state, the summary JSON and the exit code."""

from __future__ import annotations

import json
import re
from datetime import datetime

from conftest import replay
from rich.console import Console

from platformctl import report
from platformctl.cli import drift_report, exit_code
from platformctl.errors import ExitCode
from platformctl.events import RECAP_FIELDS, RunState, masked
from platformctl.progress import Progress
from platformctl.runner import RunOutcome, mask_file

RECAP_LINE = re.compile(r"^(\S+)\s+:\s+(.*)$")


def ansible_recap(events: list[dict]) -> dict[str, dict[str, int]]:
    """The PLAY RECAP as ansible printed it, parsed from the stats event's own output."""
    stdout = next(e for e in events if e["event"] == "playbook_on_stats")["stdout"]
    recap = {}
    for line in stdout.splitlines():
        match = RECAP_LINE.match(line.strip())
        if match and "ok=" in match[2]:
            recap[match[1]] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match[2])}
    return recap


def outcome(tmp_path, status="successful", rc=0) -> RunOutcome:
    return RunOutcome(status=status, rc=rc, run_dir=tmp_path, interrupted=False)


def test_first_converge_counts_match_ansible_recap():
    state, events = replay("converge")
    assert state.stats == ansible_recap(events)
    assert {h: c["changed"] for h, c in state.stats.items()} == {"db-1": 1, "web-1": 1}
    assert exit_code("install", state) == ExitCode.OK


def test_summary_json_agrees_with_recap(tmp_path):
    state, events = replay("failure")
    document = report.summary("install", "sample", outcome(tmp_path, "failed", 2), state, 1)
    file = tmp_path / "summary.json"
    report.write_json(file, document)
    written = json.loads(file.read_text())
    assert written["hosts"] == ansible_recap(events)
    assert written["totals"] == {f: sum(h[f] for h in written["hosts"].values()) for f in RECAP_FIELDS}
    assert written["failures"][0]["host"] == "db-1"
    assert "refuses this on purpose" in written["failures"][0]["message"]
    assert "drift" not in written


def test_time_per_role_follows_the_task_events_and_is_printed_and_written(tmp_path):
    state, events = replay("converge")
    starts = [e for e in events if e["event"] in ("playbook_on_task_start", "playbook_on_handler_task_start")]
    assert sum(state.role_tasks.values()) == len(starts)
    first, last = events[0]["created"], next(e for e in events if e["event"] == "playbook_on_stats")["created"]
    elapsed = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    assert 0 < sum(state.role_seconds.values()) <= elapsed
    assert set(state.role_seconds) == {e["event_data"].get("role") or "(plays)" for e in starts}
    document = report.summary("install", "sample", outcome(tmp_path), state, 0)
    assert document["roles"]["sample"]["tasks"] == state.role_tasks["sample"]
    console = Console(record=True, width=120)
    report.print_end(console, "install", state, outcome(tmp_path), [])
    assert "Time per role" in console.export_text()


def test_drift_report_counts_each_checked_role_per_host():
    state, _ = replay("drift")
    report = drift_report(state, 1_800_000_000.4)
    assert set(report) == set(state.stats)
    for host, entry in report.items():
        drifted = [c for c in state.changes if c.host == host]
        assert sum(entry["roles"].values()) == len(drifted) > 0
        assert set(entry["roles"]) >= {c.role or "(plays)" for c in drifted}
        assert entry["success"] is True and entry["time"] == 1_800_000_000
    failed, _ = replay("failure")
    assert not drift_report(failed, 0)["db-1"]["success"]


def test_reconverge_reports_no_change():
    state, _ = replay("reconverge")
    assert state.totals["changed"] == 0
    assert state.changes == []
    assert exit_code("check", state) == ExitCode.OK


def test_check_mode_changes_are_drift_with_their_diff(tmp_path):
    state, _ = replay("drift")
    assert exit_code("check", state) == ExitCode.DRIFT
    assert {(c.host, c.role, c.task) for c in state.changes} == {
        ("web-1", "sample", "Write the sample file"), ("db-1", "sample", "Write the sample file")}
    assert all("-managed by the sample role" in c.diff and "+edited by hand" in c.diff for c in state.changes)
    document = report.summary("check", "sample", outcome(tmp_path), state, 2)
    assert [d["host"] for d in document["drift"]] == ["db-1", "web-1"]


def test_a_failed_host_means_exit_1_and_names_host_and_task():
    state, _ = replay("failure")
    assert exit_code("install", state) == ExitCode.FAILED
    assert exit_code("preflight", state) == ExitCode.PREFLIGHT_FAILED
    assert [(f.host, f.task) for f in state.failures] == [("db-1", "Fail on the database host")]
    assert report.failure_lines(state) == [
        "failed: db-1: Fail on the database host: the database host refuses this on purpose"]


def test_a_failed_loop_is_reported_by_its_failed_items_messages():
    state = RunState()
    state.handle({"event": "runner_on_failed", "event_data": {"host": "db-1", "task": "Check the units", "res": {
        "msg": "One or more items failed", "results": [
            {"failed": False, "msg": "All assertions passed"},
            {"failed": True, "msg": "ollama.service is inactive"},
            {"failed": True, "msg": "apt-daily.timer is failed"}]}}})
    assert [f.message for f in state.failures] == ["ollama.service is inactive; apt-daily.timer is failed"]


def test_a_failed_task_with_no_log_says_its_output_is_hidden():
    state = RunState()
    state.handle({"event": "runner_on_failed", "event_data": {"host": "db-1", "task": "Sign the certificate", "res": {
        "censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result",
        "changed": False}}})
    assert [f.message for f in state.failures] == [
        "failed; its output is hidden because it can hold a secret (no_log)"]


def test_a_debug_warning_is_a_notice_and_a_changed_debug_says_its_drift():
    state = RunState()
    loop = {"results": [{"msg": "[WARNING] ufw allow 5432/tcp: allows 5432/tcp from anywhere", "changed": False},
                        {"msg": "[WARNING] ufw allow 6379: allows 6379 from anywhere", "changed": False}]}
    state.handle({"event": "runner_on_ok", "event_data": {
        "host": "db-1", "role": "firewall", "task": "Report the rules", "task_action": "ansible.builtin.debug",
        "res": loop}})
    assert state.notices == ["db-1: ufw allow 5432/tcp: allows 5432/tcp from anywhere",
                             "db-1: ufw allow 6379: allows 6379 from anywhere"]
    assert state.changes == []
    state.handle({"event": "runner_on_ok", "event_data": {
        "host": "db-1", "role": "firewall", "task": "Report the rules", "task_action": "ansible.builtin.debug",
        "res": {"changed": True, "results": [{"msg": "ufw allow 5432/tcp: allows 5432/tcp from anywhere"}]}}})
    assert [(c.host, c.diff) for c in state.changes] == [("db-1", "ufw allow 5432/tcp: allows 5432/tcp from anywhere")]


def test_argument_spec_failure_is_collected_as_bad_input():
    state, _ = replay("bad_argument")
    assert len(state.argument_errors) == 2
    assert all("sample_settings" in e and "dict" in e for e in state.argument_errors)


def test_secrets_are_masked_in_diffs_and_messages():
    state, _ = replay("drift", RunState(mask=lambda text: text.replace("edited by hand", "********")))
    assert all("edited by hand" not in c.diff and "+********" in c.diff for c in state.changes)


def test_secrets_are_masked_in_every_string_of_an_event_before_it_is_written(tmp_path):
    def hide(text: str) -> str:
        return text.replace("s3cr3t-value", "********")

    event = {"event": "runner_on_ok", "stdout": "ok: [h]", "event_data": {"res": {
        "container": {"Config": {"Env": ["DATABASE_URL=postgresql://u:s3cr3t-value@db/app", 5]}},
        "msg": "s3cr3t-value"}}}
    hidden = masked(event, hide)
    assert "s3cr3t-value" not in json.dumps(hidden)
    environment = hidden["event_data"]["res"]["container"]["Config"]["Env"]
    assert environment == ["DATABASE_URL=postgresql://u:********@db/app", 5]
    log = tmp_path / "stdout"
    log.write_text("changed: [h] => s3cr3t-value\n")
    mask_file(log, hide)
    assert log.read_text() == "changed: [h] => ********\n"


def test_progress_prints_plays_tasks_and_failures_when_not_a_terminal():
    console = Console(record=True, force_terminal=False, width=200)
    state = RunState()
    with Progress(console, state, "install") as progress:
        _, events = replay("failure", RunState())
        for event in events:
            state.handle(event)
            progress.on_event(event)
    text = console.export_text()
    assert "PLAY A play where one host fails" in text
    assert "[2] Fail on the database host" in text
    assert "failed: db-1: Fail on the database host: the database host refuses this on purpose" in text
    assert "install: done in" in text


def test_live_display_shows_current_task_and_hosts():
    console = Console(record=True, force_terminal=True, width=200)
    state = RunState()
    _, events = replay("converge", RunState())
    task = next(i for i, e in enumerate(events)
                if e["event"] == "playbook_on_task_start" and e["event_data"]["task"] == "Write the sample file")
    started = next(i for i, e in enumerate(events) if i > task and e["event"] == "runner_on_start")
    for event in events[: started + 1]:
        state.handle(event)
    console.print(Progress(console, state, "install"))
    text = console.export_text()
    assert "task 2: sample : Write the sample file" in text
    assert "on: " in text and (("web-1" in text) or ("db-1" in text))


def test_a_no_log_task_that_changed_is_drift():
    """no_log censors the result in the event (changed flag included): the printed line tells."""
    state = RunState()
    censored = {"censored": "the output has been hidden due to the fact that 'no_log: true' was specified"}
    for line, task in (("changed: [web-1]", "Start api-1"), ("ok: [web-1]", "Start api-2")):
        state.handle({"event": "runner_on_ok", "stdout": f"\r\nTASK [app : {task}] ***\r\n{line}",
                      "event_data": {"host": "web-1", "role": "app", "task": task, "res": censored}})
    assert [(c.task, c.diff) for c in state.changes] == [("Start api-1", "")]
    assert exit_code("check", state) == ExitCode.DRIFT
