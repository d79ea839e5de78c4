"""The live view of a run: play, current task and hosts, counts, elapsed time. On a terminal
it redraws in place; otherwise (CI, a pipe) it prints one line per play and task."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from platformctl.events import RunState


class Progress:
    def __init__(self, console: Console, state: RunState, title: str) -> None:
        self.console = console
        self.state = state
        self.title = title
        self.started = time.monotonic()
        self.spinner = Spinner("dots", style="cyan")
        self.live: Live | None = None
        self._failures_shown = 0

    def __enter__(self) -> Progress:
        if self.console.is_terminal:
            self.live = Live(self, console=self.console, refresh_per_second=8, transient=True)
            self.live.__enter__()
        else:
            self.console.print(f"{self.title}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.live.__exit__(None, None, None)
        self.console.print(f"{self.title}: done in {self.elapsed()}, {self.state.tasks_started} tasks")

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60}m{seconds % 60:02d}s"

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        printer = self.live.console if self.live else self.console
        for failure in self.state.failures[self._failures_shown:]:
            what = "unreachable" if failure.unreachable else "failed"
            printer.print(Text(f"  {what}: {failure.host}: {_label(failure.role, failure.task)}: {failure.message}",
                               style="red"))
        self._failures_shown = len(self.state.failures)
        if self.live is None:
            if kind == "playbook_on_play_start":
                printer.print(f"PLAY {self.state.play}")
            elif kind == "playbook_on_task_start":
                printer.print(f"  [{self.state.tasks_started}] {_label(self.state.role, self.state.task)}",
                              highlight=False)

    def __rich__(self) -> Group:
        state = self.state
        counts = Text.assemble(
            ("changed ", "dim"), (str(len(state.changes)), "yellow"),
            ("  failed ", "dim"), (str(len(state.failures)), "red" if state.failures else "green"),
            ("  results ", "dim"), str(state.results),
            ("  elapsed ", "dim"), self.elapsed(),
        )
        hosts = ", ".join(sorted(state.active_hosts)) or "-"
        self.spinner.update(text=Text(f"{self.title} · {state.play}", style="bold"))
        return Group(
            self.spinner,
            Text(f"  task {state.tasks_started}: {_label(state.role, state.task)}", overflow="ellipsis", no_wrap=True),
            Text(f"  on: {hosts}", style="dim", overflow="ellipsis", no_wrap=True),
            Text("  ").append_text(counts),
        )


def _label(role: str, task: str) -> str:
    return f"{role} : {task}" if role else task
