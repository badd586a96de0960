"""systemd integration: the user units, `findsimilar service`, sd_notify and socket activation.

Real tools where they exist: `systemd-analyze verify` checks the installed units and
`systemd-socket-activate` hands a real listening socket to a real child process. Only
`systemctl` is faked (a shell script on PATH): a test must never touch the user manager
of the machine it runs on.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from findsimilar import systemd
from findsimilar.cli.commands.service import service_group
from findsimilar.cli.install.installer import MARKER, daemon_command
from findsimilar.cli.install.units import UNITS, render_units

REPO = Path(__file__).resolve().parents[2]
# Looked up at import time: the tests below replace PATH to hide the real systemctl.
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
NO_BUS = "Failed to connect to bus: No medium found"


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder under /tmp: Unix socket paths must stay under ~107 bytes (tmp_path is deep)."""
    path = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def units(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG_CONFIG_HOME; returns the user unit folder inside it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path / "config" / "systemd" / "user"


@pytest.fixture
def systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """PATH holds only a scratch bin folder: no systemctl until the test makes a fake one.

    Calling the fixture with a shell snippet installs that as `systemctl`; every call's
    arguments are appended to the returned log file.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "systemctl.log"
    monkeypatch.setenv("PATH", str(bin_dir))

    def make(body: str) -> Path:
        script = bin_dir / "systemctl"
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{log}"\n{body}\n')
        script.chmod(0o755)
        return log

    return make


def service(*args: str) -> Result:
    return CliRunner().invoke(service_group, list(args), catch_exceptions=False)


def verify(*paths: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze --user verify`, which needs no running systemd, only a runtime dir."""
    assert SYSTEMD_ANALYZE is not None
    runtime = tempfile.mkdtemp(prefix="fs-rt-", dir="/tmp")
    os.chmod(runtime, 0o700)
    try:
        return subprocess.run([SYSTEMD_ANALYZE, "--user", "verify", *map(str, paths)],
                              env={**os.environ, "XDG_RUNTIME_DIR": runtime},
                              capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


def write_units(folder: Path, texts: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text)
    return [folder / name for name in texts]


needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze not installed (Debian: systemd)")


# --- (a) the units are valid systemd units ----------------------------------------------

@needs_analyze
def test_installed_units_pass_systemd_analyze_verify(units, systemctl):
    assert service("install").exit_code == 0
    proc = verify(units / "findsimilar.service", units / "findsimilar.socket")
    assert proc.returncode == 0, proc.stderr
    # Unknown keys are only warnings to verify: any word about our units is a defect.
    assert "findsimilar" not in proc.stdout + proc.stderr


@needs_analyze
def test_verify_rejects_a_unit_whose_command_does_not_exist(short_dir):
    """Proves the check above is not vacuous here: verify looks at ExecStart's binary."""
    paths = write_units(short_dir, render_units(["/nonexistent/findsimilar"]))
    proc = verify(*paths)
    assert proc.returncode != 0
    assert "/nonexistent/findsimilar" in proc.stderr


@needs_analyze
def test_a_command_in_a_folder_with_spaces_and_percent_signs_still_verifies(short_dir):
    exe = short_dir / "my apps 100% $HOME" / "findsimilar"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    paths = write_units(short_dir / "units", render_units([str(exe), "-m", "findsimilar"]))
    proc = verify(*paths)
    assert proc.returncode == 0, proc.stderr


def test_the_committed_templates_are_templates_not_installed_units():
    service_text = (REPO / "systemd" / "findsimilar.service").read_text()
    assert "ExecStart=@FINDSIMILAR@ daemon run" in service_text
    for name in UNITS:
        assert MARKER not in (REPO / "systemd" / name).read_text()
    socket_text = (REPO / "systemd" / "findsimilar.socket").read_text()
    assert "ListenStream=%t/findsimilar/daemon.sock" in socket_text


# --- (b) findsimilar service install / uninstall / status -------------------------------

def test_install_without_a_user_manager_writes_both_units_warns_and_exits_0(units, systemctl):
    systemctl(f'echo "{NO_BUS}" >&2; exit 1')
    result = service("install")
    assert result.exit_code == 0, result.output
    for name in UNITS:
        assert (units / name).read_text().startswith(f"# {MARKER}")
    exec_start = next(line for line in (units / "findsimilar.service").read_text().splitlines()
                      if line.startswith("ExecStart="))
    command = exec_start.removeprefix("ExecStart=").split()
    assert command[-2:] == ["daemon", "run"] and os.access(command[0], os.X_OK)
    assert NO_BUS in result.stderr
    assert "systemctl --user daemon-reload" in result.stderr
    assert "systemctl --user enable --now findsimilar.socket findsimilar.service" in result.stderr


def test_install_without_systemctl_at_all_still_writes_both_units(units, systemctl):
    result = service("install")
    assert result.exit_code == 0
    assert "systemctl is not installed" in result.stderr
    assert sorted(p.name for p in units.iterdir()) == sorted(UNITS)


def test_reinstalling_rewrites_identical_files_and_leaves_no_temp_files(units, systemctl):
    service("install")
    first = {name: (units / name).read_bytes() for name in UNITS}
    assert service("install").exit_code == 0
    assert {name: (units / name).read_bytes() for name in UNITS} == first
    assert sorted(p.name for p in units.iterdir()) == sorted(UNITS)
    assert all(stat.S_IMODE((units / n).stat().st_mode) == 0o644 for n in UNITS)


def test_install_with_a_user_manager_reloads_then_enables_and_starts_both(units, systemctl):
    log = systemctl("exit 0")
    result = service("install")
    assert result.exit_code == 0 and result.stderr == ""
    assert log.read_text().splitlines() == [
        "--user daemon-reload", "--user enable --now findsimilar.socket findsimilar.service"]


def test_reinstalling_a_changed_unit_restarts_a_running_daemon(units, systemctl):
    log = systemctl("exit 0")
    service("install")
    service("install")  # unchanged: nothing to restart
    service_file = units / "findsimilar.service"
    service_file.write_text(service_file.read_text().replace("Nice=10", "Nice=5"))
    service("install")
    calls = log.read_text().splitlines()
    assert calls.count("--user try-restart findsimilar.service") == 1
    assert calls[-1] == "--user try-restart findsimilar.service"
    assert "Nice=10" in service_file.read_text()


def test_install_fails_loudly_when_the_manager_refuses_to_enable(units, systemctl):
    systemctl('[ "$2" = enable ] && { echo "Unit findsimilar.socket has a bad setting" >&2; '
              "exit 1; }; exit 0")
    result = service("install")
    assert result.exit_code == 1
    assert "bad setting" in result.stderr
    assert (units / "findsimilar.service").exists()  # written before enabling


def test_no_enable_only_writes_the_files(units, systemctl):
    log = systemctl("exit 0")
    assert service("install", "--no-enable").exit_code == 0
    assert not log.exists()
    assert all((units / name).exists() for name in UNITS)


def test_print_shows_both_units_and_writes_nothing(units, systemctl):
    result = service("install", "--print")
    assert result.exit_code == 0
    assert "[Service]" in result.stdout and "[Socket]" in result.stdout
    assert f"# {units / 'findsimilar.socket'}" in result.stdout
    assert "@FINDSIMILAR@ daemon" not in result.stdout
    assert not units.exists()


def test_install_refuses_to_overwrite_a_users_own_unit_unless_forced(units, systemctl):
    units.mkdir(parents=True)
    (units / "findsimilar.service").write_text("[Service]\nExecStart=/bin/true\n")
    result = service("install")
    assert result.exit_code == 1 and "not written by findsimilar" in result.stderr
    assert (units / "findsimilar.service").read_text().startswith("[Service]")
    assert service("install", "--force").exit_code == 0
    assert (units / "findsimilar.service").read_text().startswith(f"# {MARKER}")


def test_uninstall_removes_our_units_and_their_enablement_links(units, systemctl):
    systemctl(f'echo "{NO_BUS}" >&2; exit 1')
    service("install")
    # What `systemctl --user enable` leaves behind (it may have run offline).
    for target, name in (("sockets", "findsimilar.socket"), ("default", "findsimilar.service")):
        (units / f"{target}.target.wants").mkdir()
        (units / f"{target}.target.wants" / name).symlink_to(units / name)
    result = service("uninstall")
    assert result.exit_code == 0, result.output
    assert NO_BUS in result.stderr
    assert sorted(p.name for p in units.iterdir()) == ["default.target.wants",
                                                        "sockets.target.wants"]
    assert not any(units.glob("*/findsimilar.*"))


def test_uninstall_stops_and_disables_before_removing(units, systemctl):
    log = systemctl("exit 0")
    service("install", "--no-enable")
    assert service("uninstall").exit_code == 0
    assert log.read_text().splitlines() == [
        "--user disable --now findsimilar.service findsimilar.socket", "--user daemon-reload"]
    assert not any(units.iterdir())


def test_uninstall_refuses_to_remove_a_users_own_unit(units, systemctl):
    log = systemctl("exit 0")
    service("install", "--no-enable")
    (units / "findsimilar.service").write_text("[Service]\nExecStart=/usr/bin/my-own\n")
    result = service("uninstall")
    assert result.exit_code == 1
    assert "not written by findsimilar" in result.stderr
    assert "my-own" in (units / "findsimilar.service").read_text()
    assert (units / "findsimilar.socket").exists()  # nothing is half-removed
    assert not log.exists()  # and the user's unit was not stopped either


def test_uninstall_with_nothing_installed_is_a_no_op(units, systemctl):
    result = service("uninstall")
    assert result.exit_code == 0 and "nothing to uninstall" in result.stdout


def test_status_shows_files_and_what_the_manager_says(units, systemctl):
    systemctl('case "$2" in is-enabled) echo enabled;; is-active) echo active;; esac; exit 0')
    before = json.loads(service("status", "--json").stdout)
    assert not before["units"]["findsimilar.socket"]["installed"]
    service("install", "--no-enable")
    after = json.loads(service("status", "--json").stdout)["units"]
    assert after["findsimilar.socket"] == {
        "path": str(units / "findsimilar.socket"), "installed": True, "ours": True,
        "up_to_date": True, "enabled": "enabled", "active": "active"}
    text = service("status").stdout
    assert "findsimilar.service: installed at" in text and "active: active" in text


def test_status_without_systemctl_says_unknown_instead_of_failing(units, systemctl):
    result = service("status")
    assert result.exit_code == 0
    assert "findsimilar.service: not installed" in result.stdout
    assert "unknown" in result.stdout


def test_every_service_command_is_documented():
    commands = {"service": service_group, **service_group.commands}
    for name, command in commands.items():
        assert command.help and "Example" in command.help, name
    for name in service_group.commands:
        assert service(name, "--help").exit_code == 0


def test_the_unit_runs_the_findsimilar_next_to_this_python(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/somewhere/pytest"])
    assert daemon_command() == [str(Path(sys.executable).absolute().parent / "findsimilar")]


def test_the_unit_falls_back_to_python_m_without_a_findsimilar_script(monkeypatch, tmp_path):
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "__main__.py")])
    assert daemon_command() == [str(python), "-m", "findsimilar"]


# --- (c) sd_notify ----------------------------------------------------------------------

@pytest.fixture
def notify_receiver(short_dir, monkeypatch) -> Iterator[socket.socket]:
    """A datagram socket standing in for systemd, named in $NOTIFY_SOCKET."""
    path = short_dir / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield receiver


def test_notify_ready_reaches_the_notify_socket_with_its_status(notify_receiver):
    assert systemd.notify_ready("watching 3 folders") is True
    assert notify_receiver.recv(4096) == b"READY=1\nSTATUS=watching 3 folders"


@pytest.mark.parametrize(("send", "expected"), [
    (lambda: systemd.notify_status("indexing 12/40"), b"STATUS=indexing 12/40"),
    (systemd.notify_stopping, b"STOPPING=1"),
    (systemd.notify_watchdog, b"WATCHDOG=1"),
    (systemd.notify_ready, b"READY=1"),
])
def test_each_helper_sends_its_assignment(notify_receiver, send, expected):
    assert send() is True
    assert notify_receiver.recv(4096) == expected


def test_a_status_with_newlines_cannot_smuggle_other_assignments(notify_receiver):
    systemd.notify_status("bad\nREADY=1")
    assert notify_receiver.recv(4096) == b"STATUS=bad READY=1"


def test_notify_reaches_an_abstract_socket(monkeypatch):
    name = f"findsimilar-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(b"\0" + name.encode())
        receiver.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1") is True
        assert receiver.recv(4096) == b"READY=1"


def test_notify_returns_false_outside_systemd(monkeypatch, short_dir):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify_ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "nobody-listens"))
    assert systemd.notify_ready() is False  # and does not raise


# --- (d) socket activation --------------------------------------------------------------

# The child: take the socket from systemd, answer one connection with what it saw.
ECHO_CHILD = """
import fcntl, json, os
from findsimilar.systemd import first_unix_listener, listen_fds
socks = listen_fds()
listener = first_unix_listener(socks)
conn, _ = listener.accept()
data = conn.recv(1024)
flags = fcntl.fcntl(listener.fileno(), fcntl.F_GETFD)
conn.sendall(json.dumps({
    "echo": data.decode(), "count": len(socks), "fd": listener.fileno(),
    "cloexec": bool(flags & fcntl.FD_CLOEXEC),
    "env_left": sorted(k for k in os.environ if k.startswith("LISTEN_")),
}).encode())
conn.close()
"""


# What systemd does between fork and exec: the socket moves to fd 3, LISTEN_PID is the
# pid that will run the service (exec keeps it), LISTEN_FDS counts the sockets.
AS_SYSTEMD_WOULD = """
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
os.execv(sys.executable, [sys.executable, "-c", sys.argv[2]])
"""


def ask(path: Path, message: bytes, timeout: float = 30) -> dict:
    """Connect (waiting for the socket to appear), send, read the reply until EOF."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(message)
        chunks = []
        while chunk := client.recv(4096):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))


def finish(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""


@pytest.mark.skipif(SOCKET_ACTIVATE is None,
                    reason="systemd-socket-activate not installed (Debian: systemd)")
def test_a_child_started_by_systemd_socket_activate_serves_on_the_passed_socket(short_dir):
    path = short_dir / "test.sock"
    proc = subprocess.Popen([SOCKET_ACTIVATE, "-l", str(path), sys.executable, "-c", ECHO_CHILD],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        reply = ask(path, b"hello")
    finally:
        finish(proc)
    assert reply == {"echo": "hello", "count": 1, "fd": 3, "cloexec": True, "env_left": []}


def test_a_child_given_a_socket_at_fd_3_by_hand_serves_on_it(short_dir):
    path = short_dir / "test.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        fd = listener.fileno()
        proc = subprocess.Popen([sys.executable, "-c", AS_SYSTEMD_WOULD, str(fd), ECHO_CHILD],
                                pass_fds=(fd,), stderr=subprocess.PIPE)
        try:
            reply = ask(path, b"by hand")
        finally:
            finish(proc)
    assert reply == {"echo": "by hand", "count": 1, "fd": 3, "cloexec": True, "env_left": []}


def test_sockets_meant_for_another_process_are_not_taken(monkeypatch):
    monkeypatch.setenv("LISTEN_PID", "1" if os.getpid() != 1 else "2")
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "daemon.sock")
    assert systemd.listen_fds() == []
    assert not any(k.startswith("LISTEN_") for k in os.environ)


def test_malformed_or_missing_listen_variables_mean_no_sockets(monkeypatch):
    monkeypatch.delenv("LISTEN_PID", raising=False)
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    assert systemd.listen_fds() == []
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    monkeypatch.setenv("LISTEN_FDS", "three")
    assert systemd.listen_fds() == []
    assert "LISTEN_PID" not in os.environ


def test_first_unix_listener_skips_datagram_and_unlistening_sockets(short_dir):
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as dgram, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        listening.bind(str(short_dir / "l.sock"))
        listening.listen()
        assert systemd.first_unix_listener([dgram, tcp, idle, listening]) is listening
        assert systemd.first_unix_listener([dgram, idle]) is None
