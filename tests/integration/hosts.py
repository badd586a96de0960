"""Run the real host applications (darktable, Nautilus, Caja, Nemo, Thunar, Geeqie) headless.

A :class:`HostSession` is what a desktop gives a program: an X display (a real Xvfb
server), a private D-Bus session bus (a real dbus-daemon) and a HOME with its own XDG
folders, all under one temp folder and all stopped at the end. The hosts themselves are
the Debian packages `.ci/run` installs; a test for a host that is not installed is
skipped with the package to install, except under ``FINDSIMILAR_REQUIRE_HOSTS=1``
(set by `.ci/run`), where a missing host fails the test: CI must not quietly prove less.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

__all__ = ["HostSession", "host_session", "needs_host", "host_version"]

REQUIRE_HOSTS = os.environ.get("FINDSIMILAR_REQUIRE_HOSTS") == "1"
XVFB = shutil.which("Xvfb")
DBUS_DAEMON = shutil.which("dbus-daemon")
# The hosts load their Python extensions with Debian's own Python (nautilus-python,
# caja-python, nemo-python embed it), not findsimilar's virtualenv.
SYSTEM_PYTHON = "/usr/bin/python3"
T = TypeVar("T")


def needs_host(*commands: str, package: str) -> Callable[[T], T]:
    """Skip (or, with FINDSIMILAR_REQUIRE_HOSTS=1, fail) unless every command exists.

    ``commands`` are executables or absolute paths (a host's extension library, say)."""
    missing = [c for c in (*commands, "Xvfb", "dbus-daemon")
               if not (Path(c).exists() if c.startswith("/") else shutil.which(c))]
    reason = f"{', '.join(missing)} not installed (apt-get install {package} xvfb dbus-daemon)"
    if not missing:
        return lambda test: test
    if not REQUIRE_HOSTS:
        return pytest.mark.skipif(True, reason=reason)

    def fail_instead(test: T) -> T:
        @functools.wraps(test)
        def missing_host(*_args: object, **_kwargs: object) -> None:
            pytest.fail(f"FINDSIMILAR_REQUIRE_HOSTS=1 but {reason}")
        return missing_host  # type: ignore[return-value]
    return fail_instead


def host_version(argv: list[str], env: dict[str, str] | None = None) -> str:
    """The first line a host prints for ``--version`` (for the test report)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    lines = [line for line in (proc.stdout + proc.stderr).splitlines()
             if line.strip() and "WARNING" not in line]
    return lines[0].strip() if lines else "?"


class HostSession:
    """An Xvfb display, a D-Bus session bus and a private HOME, for host programs."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.home = base / "home"
        self.data_home = self.home / ".local" / "share"
        self.config_home = self.home / ".config"
        self.cache_home = self.home / ".cache"
        self.runtime = Path(tempfile.mkdtemp(prefix="fs-run-", dir="/tmp"))
        self.runtime.chmod(0o700)
        for folder in (self.data_home, self.config_home, self.cache_home):
            folder.mkdir(parents=True, exist_ok=True)
        # No Tracker file miner on this bus: Nautilus asks for it, and it would index the
        # new HOME, taking the CPU the host needs to load its folder (the private bus
        # looks in $XDG_DATA_HOME/dbus-1/services first).
        services = self.data_home / "dbus-1" / "services"
        services.mkdir(parents=True, exist_ok=True)
        for name in ("org.freedesktop.Tracker3.Miner.Files",
                     "org.freedesktop.Tracker3.Miner.Extract"):
            (services / f"{name}.service").write_text(
                f"[D-BUS Service]\nName={name}\nExec=/bin/false\n")
        self.display = ""
        self.bus = ""
        self._servers: list[subprocess.Popen[bytes]] = []
        self._programs: list[subprocess.Popen[bytes]] = []

    # --- servers ----------------------------------------------------------------------

    def _read_line(self, fd: int, what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        data = b""
        os.set_blocking(fd, False)
        while not data.endswith(b"\n"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start within {timeout} s")
            try:
                chunk = os.read(fd, 256)
            except BlockingIOError:
                time.sleep(0.02)
                continue
            if not chunk:
                raise RuntimeError(f"{what} exited before it was ready")
            data += chunk
        return data.decode().strip()

    def start(self) -> HostSession:
        read, write = os.pipe()
        try:
            self._servers.append(spawn(
                [XVFB or "Xvfb", "-displayfd", str(write), "-screen", "0", "1280x1024x24",
                 "-nolisten", "tcp", "-noreset"], self.base / "xvfb.log", pass_fds=(write,)))
            os.close(write)
            write = -1
            self.display = ":" + self._read_line(read, "Xvfb")
        finally:
            os.close(read)
            if write != -1:
                os.close(write)
        read, write = os.pipe()
        try:
            self._servers.append(spawn(
                [DBUS_DAEMON or "dbus-daemon", "--session", "--nofork", "--nopidfile",
                 f"--print-address={write}"], self.base / "dbus.log", pass_fds=(write,),
                env=self.env()))
            os.close(write)
            write = -1
            self.bus = self._read_line(read, "dbus-daemon")
        finally:
            os.close(read)
            if write != -1:
                os.close(write)
        return self

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a program on this desktop (nothing of findsimilar's own)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FINDSIMILAR_", "XDG_", "DBUS_", "WAYLAND_", "PYTEST_"))
               and k not in ("DISPLAY", "HOME", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env.update({
            "HOME": str(self.home), "XDG_DATA_HOME": str(self.data_home),
            "XDG_CONFIG_HOME": str(self.config_home), "XDG_CACHE_HOME": str(self.cache_home),
            "XDG_RUNTIME_DIR": str(self.runtime), "NO_AT_BRIDGE": "1",
            "GDK_BACKEND": "x11", "LANG": "C.UTF-8",
        })
        if self.display:
            env["DISPLAY"] = self.display
        if self.bus:
            env["DBUS_SESSION_BUS_ADDRESS"] = self.bus
        env.update(extra)
        return env

    # --- host programs ------------------------------------------------------------------

    def launch(self, argv: list[str], log: Path, **extra_env: str) -> subprocess.Popen[bytes]:
        """Start a host program on this desktop; stopped (with its children) at the end."""
        proc = spawn(argv, log, env=self.env(**extra_env), cwd=self.home)
        self._programs.append(proc)
        return proc

    def wait_for_file(self, path: Path, proc: subprocess.Popen[bytes] | None, log: Path,
                      timeout: float = 90.0) -> str:
        """Wait for a host to write PATH (atomically: written then renamed); returns it.

        Fails at once, with the host's log, when the host exits first."""
        deadline = time.monotonic() + timeout
        while not path.exists():
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"{proc.args[0]} exited ({proc.returncode}) before "
                                     f"writing {path.name}:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{path.name} not written within {timeout} s:\n{tail(log)}")
            time.sleep(0.1)
        return path.read_text()

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """Stop a host program and everything it started (its process group)."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers of the group

    def close(self) -> None:
        for proc in reversed(self._programs + self._servers):
            self.stop(proc)
        shutil.rmtree(self.runtime, ignore_errors=True)


def spawn(argv: list[str], log: Path, **popen: object) -> subprocess.Popen[bytes]:
    """Start ARGV in its own process group, stdout and stderr to LOG, stdin empty."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,  # type: ignore[call-overload]
                                stderr=subprocess.STDOUT, start_new_session=True, **popen)


def tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def host_session(base: Path) -> Iterator[HostSession]:
    """A started :class:`HostSession` under BASE, closed at the end."""
    session = HostSession(base)
    try:
        yield session.start()
    finally:
        session.close()
