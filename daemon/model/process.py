"""The model worker as the operating system sees it (``client``): what its exit status
says, waiting for it, killing it, and its resident memory."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

__all__ = ["death", "kill", "reap", "rss_bytes"]


def death(code: int) -> tuple[str, str]:
    """What a worker's exit status says: for the log, and as a failed file's reason."""
    if code == -signal.SIGKILL:
        return ("was killed (SIGKILL)", "the model worker reading it was killed (SIGKILL: "
                "out of memory?) and replaced")
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return (f"crashed ({name})",
                f"the image decoder crashed on it ({name}); the model worker was replaced")
    return (f"exited (status {code})",
            f"the model worker reading it exited (status {code}) and was replaced")


def reap(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # it closed its socket but lives on
        kill(proc)
        return proc.wait()


def kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()  # SIGKILL ends a stopped process too


def rss_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None

