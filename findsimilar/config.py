"""One place for every setting, location and environment variable findsimilar reads.

A setting's value is, from weakest to strongest: its default, the config file
(``$XDG_CONFIG_HOME/findsimilar/config.toml``, read by the CLI and the daemon alike, so
it reaches a daemon that systemd starts), then its ``FINDSIMILAR_<KEY>`` variable. A
variable whose value is not valid is ignored, as it always was; a bad config file is a
``ConfigError`` that names the file and the key. XDG locations come from platformdirs
(relative XDG values are ignored, as the spec requires). No other module reads
``os.environ``: the accessors at the end are how they ask.
"""

from __future__ import annotations

import functools
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from findsimilar.errors import EXIT_USAGE, FindSimilarError

__all__ = ["DEFAULT_EXTRACTOR", "SETTINGS", "Config", "ConfigError", "cache_home",
           "child_environment", "config_file_path", "config_home", "data_home",
           "default_pictures_dir", "default_socket_path", "load_config", "log_path",
           "notify_socket", "runtime_dir", "setting", "standard_data_dir", "state_home",
           "take_listen_environment", "under_journald"]

DEFAULT_EXTRACTOR = "efficientnet-lite0-gem512"
ENV_PREFIX = "FINDSIMILAR_"


class ConfigError(FindSimilarError):
    """The config file cannot be read or holds a bad setting (the message names both)."""

    exit_code = EXIT_USAGE


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Config:
    """Where findsimilar keeps its state and how it behaves.

    ``data_dir`` holds the SQLite store (``store.db``) and the FAISS index.
    """

    data_dir: Path
    extractor: str = DEFAULT_EXTRACTOR
    # Pictures larger than this many pixels are refused as decompression bombs.
    max_pixels: int = 250_000_000
    # Files above this size are hashed and decoded by streaming, not in memory.
    max_in_memory_bytes: int = 64 * 1024 * 1024
    # Measured on 2 cores (BENCHMARKS.md): one model thread plus two decoding
    # threads beat two of each by ~30% (oversubscription), and batches of 8 beat 16.
    batch_size: int = 8
    model_threads: int = field(default_factory=lambda: max(1, _cpus() // 2))
    decode_workers: int = field(default_factory=lambda: max(1, min(8, _cpus() - _cpus() // 2 + 1)))

    socket_path: Path = None  # type: ignore[assignment]  # set in __post_init__
    # Watching: a file is indexed once it has been quiet this long after a
    # close-write event, or this long without any event at all (writers that never
    # close, e.g. a slow download that stalls).
    settle_after_close: float = 0.2
    settle_quiet: float = 2.0
    # Roots whose inotify watches could not be set up are rescanned this often.
    rescan_interval: float = 300.0
    # After this long idle with the library changed, the daemon runs the pixel checks
    # of new duplicate candidates, so `dupes` answers from the cache (0 = never).
    precheck_after: float = 60.0
    # The self-check (daemon/service/selfcheck.py): edited copies of up to this many
    # photos (0 = no self-check) searched every this many seconds (0 = only when asked),
    # once the daemon has been quiet this long.
    selfcheck_photos: int = 200
    selfcheck_every: float = 86_400.0
    selfcheck_after: float = 120.0
    # Past this many photos the index is compressed (PCA + IVF + 8-bit codes, ~270 bytes
    # a photo instead of 5 KB, results re-scored exactly); 0 = always exact.
    compress_above: int = 50_000
    # Seconds a store write waits for another program's lock before the task waits
    # (and retries) instead; SQLite's own wait.
    busy_timeout: float = 30.0
    # The model runs in a worker process that ends after this many seconds without work
    # (0 = never): the daemon that stays up all day does not hold torch.
    model_idle: float = 300.0
    # A picture the worker has been reading for this long (or a worker silent this long
    # with work given) is taken as a hang: the worker is killed and replaced, and the
    # file recorded as failed (0 = no limit).
    model_timeout: float = 120.0
    # Seconds a search waits for the pixel checks of its near-tied first results
    # (daemon/rerank.py) before it answers in cosine order (0 = never check).
    rerank_timeout: float = 1.0
    # A background upgrade to a new extractor that failed (its model cannot load, its
    # worker keeps dying, the disk is full) is tried again after this many seconds.
    upgrade_retry: float = 600.0
    # Seconds a client of the daemon's socket has to send a request, and to take a reply.
    client_timeout: float = 60.0
    # Every command runs in the calling process, like --no-daemon.
    no_daemon: bool = False
    # The daemon shows a desktop notification when a new photo is a duplicate.
    notify: bool = False
    # The model's arithmetic: auto (bfloat16 where the CPU has it natively), fp32, bf16.
    precision: str = "auto"
    resnet50_weights: Path | None = None
    # Where `integrate` takes its templates from (default: the packaged plugins).
    plugins_dir: Path | None = None
    # The config file these settings were read from; None when there is none.
    config_file: Path | None = None

    def __post_init__(self) -> None:
        if self.socket_path is None:
            object.__setattr__(self, "socket_path", default_socket_path(Path(self.data_dir)))

    @property
    def store_path(self) -> Path:
        return self.data_dir / "store.db"

    @property
    def log_path(self) -> Path:
        """Where a daemon the CLI starts writes its log (see ``log_path``)."""
        return log_path(self.data_dir)


# -- the settings: one table for the file and the variables ----------------------------

@dataclass(frozen=True)
class Setting:
    """One setting: its key in the config file (the variable is FINDSIMILAR_<KEY>), what
    it must be, and how a variable's text and a file's TOML value become its value."""

    key: str
    must_be: str
    from_env: Callable[[str], Any]  # None: not valid, ignored
    from_file: Callable[[Any], Any]  # None: not valid, an error

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.key.upper()


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None  # no NaN


def _seconds(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number >= 0 else None


def _positive_seconds(value: Any) -> float | None:
    number = _number(value)
    return number if number is not None and number > 0 else None


def _count_env(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _count_file(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
        else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _path_env(text: str) -> Path:
    return Path(os.path.expanduser(text))


def _path_file(value: Any) -> Path | None:
    """``~`` and ``$VARIABLE`` are expanded (e.g. ``$XDG_RUNTIME_DIR``)."""
    if not isinstance(value, str) or not value:
        return None
    return Path(os.path.expanduser(os.path.expandvars(value)))


def _flag_env(text: str) -> bool:
    return text != "0"


def _flag_file(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _precision(value: Any) -> str | None:
    return value if value in ("auto", "fp32", "bf16") else None


_SECONDS = "a number of seconds, 0 or more"
SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("data_dir", "a folder", _path_env, _path_file),
    Setting("extractor", "a model name", _text, _text),
    Setting("resnet50_weights", "a file", _path_env, _path_file),
    Setting("socket", "a socket path", _path_env, _path_file),
    Setting("settle_after_close", _SECONDS, _seconds, _seconds),
    Setting("settle_quiet", _SECONDS, _seconds, _seconds),
    Setting("precheck_after", _SECONDS, _seconds, _seconds),
    Setting("selfcheck_photos", "a whole number of photos, 0 or more", _count_env,
            _count_file),
    Setting("selfcheck_every", _SECONDS, _seconds, _seconds),
    Setting("selfcheck_after", _SECONDS, _seconds, _seconds),
    Setting("compress_above", "a whole number of photos, 0 or more", _count_env, _count_file),
    Setting("client_timeout", "a number of seconds above 0", _positive_seconds,
            _positive_seconds),
    Setting("busy_timeout", _SECONDS, _seconds, _seconds),
    Setting("model_idle", _SECONDS, _seconds, _seconds),
    Setting("model_timeout", _SECONDS, _seconds, _seconds),
    Setting("rerank_timeout", _SECONDS, _seconds, _seconds),
    Setting("upgrade_retry", _SECONDS, _seconds, _seconds),
    Setting("no_daemon", "true or false", _flag_env, _flag_file),
    Setting("notify", "true or false", _flag_env, _flag_file),
    # A bad variable reaches the model, which names the choices (as it always did).
    Setting("precision", "one of auto, fp32, bf16", _text, _precision),
    Setting("plugins_dir", "a folder", _path_env, _path_file),
)}


def setting(key: str) -> Any:
    """The value of setting ``key`` from its variable, else the config file, else None
    (the caller's default). Raises ConfigError for a bad config file."""
    spec = SETTINGS[key]
    text = os.environ.get(spec.variable, "")
    if text:
        value = spec.from_env(text)
        if value is not None:
            return value
    return _file_settings().get(key)


def config_file_path() -> Path:
    """``$XDG_CONFIG_HOME/findsimilar/config.toml`` (it need not exist)."""
    return config_home() / "findsimilar" / "config.toml"


def _file_settings() -> dict[str, Any]:
    path = config_file_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    return _parse_file(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _parse_file(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    """The settings in the file (cached while it is unchanged). Raises ConfigError."""
    import tomllib  # ~7 ms: only when there is a file

    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"the config file {path} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        spec = SETTINGS.get(key)
        if spec is None:
            raise ConfigError(f"the config file {path} has an unknown setting {key!r}; "
                              f"known: {', '.join(SETTINGS)}")
        parsed = spec.from_file(value)
        if parsed is None:
            raise ConfigError(f"the config file {path}: {key} must be {spec.must_be}, "
                              f"not {value!r}")
        values[key] = parsed
    return values


def load_config() -> Config:
    """The configuration: defaults, overridden by the config file, overridden by the
    ``FINDSIMILAR_*`` variables (README, Environment). ``data_dir`` has its symlinks
    resolved, so that every spelling of one folder finds the same daemon. Raises
    ConfigError for a bad config file."""
    data_dir = default_data_dir()
    kwargs: dict[str, Any] = {"data_dir": data_dir, "socket_path": default_socket_path(data_dir)}
    for key in SETTINGS.keys() - {"data_dir", "socket"}:  # (those two: the locations above)
        value = setting(key)
        if value is not None:
            kwargs[key] = value
    path = config_file_path()
    kwargs["config_file"] = path if path.is_file() else None
    return Config(**kwargs)


# -- locations ---------------------------------------------------------------------------

def _platformdirs() -> Any:
    import platformdirs  # ~5 ms: imported by the first location asked for

    return platformdirs


def data_home() -> Path:
    """``$XDG_DATA_HOME``, else ``~/.local/share``."""
    return _platformdirs().user_data_path()


def config_home() -> Path:
    """``$XDG_CONFIG_HOME``, else ``~/.config``."""
    return _platformdirs().user_config_path()


def cache_home() -> Path:
    """``$XDG_CACHE_HOME``, else ``~/.cache``."""
    return _platformdirs().user_cache_path()


def state_home() -> Path:
    """``$XDG_STATE_HOME``, else ``~/.local/state``."""
    return _platformdirs().user_state_path()


def standard_data_dir() -> Path:
    """The XDG data dir for findsimilar, whatever FINDSIMILAR_DATA_DIR says (symlinks
    resolved, as for every data dir)."""
    return Path(os.path.realpath(data_home() / "findsimilar"))


def default_data_dir() -> Path:
    """The ``data_dir`` setting, else the standard one; with symlinks resolved, so that
    every spelling of one folder finds the same daemon (its socket name derives from it)."""
    chosen = setting("data_dir")
    if chosen:
        return Path(os.path.realpath(chosen))
    return standard_data_dir()


def runtime_dir() -> Path:
    """``$XDG_RUNTIME_DIR/findsimilar``, or ``/tmp/findsimilar-UID`` without a session.

    Not platformdirs: its fallback (``/run/user/UID``) is not where findsimilar has
    always put its sockets, and the systemd socket unit and running daemons rely on it."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return Path(base) / "findsimilar"
    return Path(f"/tmp/findsimilar-{os.getuid()}")


def _data_dir_tag(data_dir: Path) -> str:
    """"" for the standard data dir, else ``-<hash>``: one socket and one log per data dir."""
    if data_dir == standard_data_dir():
        return ""
    # crc32, not hashlib: importing OpenSSL costs the thin client milliseconds, and a
    # clash is harmless (the daemon refuses requests for another data dir).
    return f"-{zlib.crc32(str(data_dir).encode('utf-8', 'surrogateescape')):08x}"


def default_socket_path(data_dir: Path | None = None) -> Path:
    """The ``socket`` setting, else one socket per data dir in the runtime dir.

    The default data dir gets ``daemon.sock`` (what the systemd socket unit
    listens on); another data dir gets ``daemon-<hash>.sock`` so that two stores
    never talk to each other's daemon.
    """
    chosen = setting("socket")
    if chosen:
        return Path(chosen).absolute()
    return runtime_dir() / f"daemon{_data_dir_tag(data_dir or default_data_dir())}.sock"


def log_path(data_dir: Path) -> Path:
    """The log of a daemon the CLI starts for ``data_dir``: ``daemon.log`` in
    ``$XDG_STATE_HOME/findsimilar`` (``~/.local/state/findsimilar``) for the standard
    data dir, ``daemon-<hash>.log`` (the hash of its socket) for another."""
    return state_home() / "findsimilar" / f"daemon{_data_dir_tag(data_dir)}.log"


def default_pictures_dir() -> Path:
    """The XDG pictures folder (``XDG_PICTURES_DIR``, else user-dirs.dirs), else
    ~/Pictures."""
    value = os.environ.get("XDG_PICTURES_DIR")
    if value:
        return Path(value.replace("$HOME", str(Path.home()))).expanduser()
    try:
        return _platformdirs().user_pictures_path()
    except Exception:  # a user-dirs.dirs it cannot parse: the default
        return Path.home() / "Pictures"


# -- other programs' variables -----------------------------------------------------------

def under_journald() -> bool:
    """True when stderr goes to the journal (systemd sets ``JOURNAL_STREAM``)."""
    return bool(os.environ.get("JOURNAL_STREAM"))


def notify_socket() -> str:
    """``$NOTIFY_SOCKET``: where systemd listens for sd_notify messages ("" if unset)."""
    return os.environ.get("NOTIFY_SOCKET", "")


_LISTEN_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def take_listen_environment() -> tuple[str, str]:
    """``($LISTEN_PID, $LISTEN_FDS)`` ("" where unset), removing the socket-activation
    variables from the environment so that child processes never take them as theirs."""
    found = os.environ.get("LISTEN_PID", ""), os.environ.get("LISTEN_FDS", "")
    for name in _LISTEN_ENV:
        os.environ.pop(name, None)
    return found


def child_environment(**overrides: str) -> dict[str, str]:
    """This process's environment with ``overrides``, for a process it starts."""
    return {**os.environ, **overrides}
