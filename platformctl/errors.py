"""Exit codes of the installer (a contract, see docs/design.md) and the errors that map to them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    DRIFT = 2
    PREFLIGHT_FAILED = 3
    BAD_INPUT = 4
    INTERRUPTED = 130


class InstallerError(Exception):
    """An error the user can act on: printed as one message, never as a traceback."""

    exit_code = ExitCode.FAILED

    def __init__(self, *messages: str) -> None:
        super().__init__("\n".join(messages))
        self.messages = list(messages)


class BadInput(InstallerError):
    """The inventory, a variable or an option is wrong; nothing was changed."""

    exit_code = ExitCode.BAD_INPUT


class PreflightFailed(InstallerError):
    """A precondition of the run does not hold; nothing was changed."""

    exit_code = ExitCode.PREFLIGHT_FAILED


def located(source: str, key: str | None, problem: str) -> str:
    """One line naming where the bad value is, which key, and what is expected."""
    return f"{source}: {key}: {problem}" if key else f"{source}: {problem}"
