"""The Python API: ``from findsimilar import Client``, for scripts and notebooks.

A :class:`Client` runs the command line's own backends (``cli/backends.py``): the
daemon when one runs (started if need be, as the command line starts it), or the engine
in this process with ``no_daemon=True`` (or ``FINDSIMILAR_NO_DAEMON=1``). Each method
returns exactly what the matching command prints with ``--json``, parsed (``"version"``
and ``"path_bytes"`` included: :mod:`findsimilar.jsonout`): ``search`` one line of
`findsimilar PHOTO --json`, ``index`` `index --json`, ``duplicates`` `dupes --json`,
``status`` `status --json`. Failures raise the typed errors of
:mod:`findsimilar.errors` (:class:`FindSimilarError` and its subclasses, the same
whichever backend ran), never an internal traceback; an error about a file names it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from findsimilar import errors
from findsimilar.cli.backends import Backend, choose_backend, no_daemon_requested, running_status
from findsimilar.cli.client import RemoteError
from findsimilar.cli.commands.dupes import (
    DEFAULT_KEEP_BY,
    TIERS,
    list_duplicates,
    listing_request,
)
from findsimilar.config import Config, default_socket_path, load_config
from findsimilar.errors import FindSimilarError, MissingFileError, UsageError, store_damage
from findsimilar.jsonout import dumps

__all__ = ["Client"]

PathArg = str | bytes | os.PathLike
ProgressFn = Callable[[int, int], None]
# The daemon's error types that are not in findsimilar.errors, and what they are there.
_ERROR_KINDS: dict[str, type[FindSimilarError]] = {"BadArguments": UsageError}


class Client:
    """findsimilar from Python: ``search``, ``index``, ``duplicates``, ``status``.

    ``Client()`` uses the settings the command line uses (``FINDSIMILAR_*``, the config
    file); ``data_dir`` picks another data dir (its own daemon), ``config`` a whole
    :class:`~findsimilar.config.Config`. ``no_daemon=True`` runs the engine in this
    process (it loads the model here, once, and keeps it until :meth:`close`); else
    each call asks the daemon, which is started (a note on stderr says so) unless
    ``autostart`` is False, as the command line starts it. Use it as a context manager
    (``with Client() as fs:``) or call :meth:`close`; a closed client opens again when
    used. Not for use by several threads at once.
    """

    def __init__(self, data_dir: PathArg | None = None, *, config: Config | None = None,
                 no_daemon: bool = False, autostart: bool = True) -> None:
        if data_dir is not None and config is not None:
            raise UsageError("give a data_dir or a config, not both")
        self.config = config or load_config()
        if data_dir is not None:
            # ~ expanded, symlinks resolved: as a data_dir setting is
            chosen = Path(os.path.realpath(os.path.expanduser(_path(data_dir))))
            self.config = dataclasses.replace(self.config, data_dir=chosen,
                                              socket_path=default_socket_path(chosen))
        self.no_daemon = no_daemon_requested(no_daemon or self.config.no_daemon)
        self.autostart = autostart
        self._local: Backend | None = None

    def __repr__(self) -> str:
        where = "in this process" if self.no_daemon else f"daemon on {self.config.socket_path}"
        return f"<findsimilar.Client {self.config.data_dir} ({where})>"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let go of the in-process engine (its store, index and model), if one was
        opened; the daemon keeps running."""
        local, self._local = self._local, None
        if local is not None:
            local.close()

    # -- the verbs ---------------------------------------------------------------------
    def search(self, path: PathArg, k: int = 10, *,
               min_score: float | str | None = None) -> dict[str, Any]:
        """The ``k`` indexed photos most similar to the photo at ``path`` (which need
        not be indexed), best first: ``{"version": 1, "query": ABSPATH, "results":
        [{"path", "score"}, ...]}``, as `findsimilar -k K PHOTO --json` prints it.

        Raises MissingFileError (naming the file) if there is none, ImageDecodeError if
        it is not a readable image, EmptyIndexError if nothing is indexed yet."""
        query = _path(path)
        _check_count("k", k)
        if min_score is not None and min_score != "auto" and not (
                isinstance(min_score, (int, float)) and -1.0 <= float(min_score) <= 1.0):
            raise UsageError(f'min_score is a cosine similarity from -1 to 1 or "auto", '
                             f"not {min_score}")
        if not os.path.exists(query):  # as the command line: before any daemon is asked
            raise MissingFileError(f"no such file: {os.path.abspath(query)}")
        with self._backend() as backend:
            [result] = backend.search([query], k, min_score)
        if result.get("error"):
            raise _typed(result["error"])
        return _printed(result)

    def index(self, paths: PathArg | Iterable[PathArg], *, rehash: bool = False,
              exclude: str | Iterable[str] = (),
              progress: ProgressFn | None = None) -> dict[str, Any]:
        """Index the photos at ``paths`` (a path or several; folders recursively) now and
        return the summary `findsimilar index --json` prints: ``new``, ``changed``,
        ``moved``, ``unchanged``, ``removed``, ``failed`` (``[{"path", "reason"}]``:
        unreadable files do not raise), ``extracted``, ``seconds``, ... ``rehash`` reads
        and hashes every file again; ``exclude`` globs leave files out as `index
        --exclude` does; ``progress(done, total)`` is called as it goes.

        Raises MissingFileError naming the first path that does not exist."""
        chosen = _paths(paths)
        if not chosen:
            raise UsageError("index needs at least one file or folder")
        missing = [p for p in chosen if not os.path.lexists(p)]
        if missing:
            raise MissingFileError(f"no such file or folder: {missing[0]}")
        with self._backend() as backend:
            return _printed(backend.index(chosen, progress, rehash=bool(rehash),
                                          exclude=_words(exclude, None)))

    def duplicates(self, paths: PathArg | Iterable[PathArg] | None = None, *,
                   tiers: str | Iterable[str] | None = None, threshold: float | None = None,
                   similar_threshold: float | None = None,
                   keep_in: PathArg | Iterable[PathArg] = (),
                   keep_by: str | Iterable[str] = DEFAULT_KEEP_BY,
                   exclude: str | Iterable[str] = (),
                   progress: ProgressFn | None = None) -> dict[str, Any]:
        """Duplicate groups of the indexed photos under ``paths`` (all when None):
        ``{"groups": [...], "stats": {...}}``, as `findsimilar dupes --json` prints it
        (a plan `findsimilar dupes apply` takes). The options are `dupes`': ``tiers``
        (default exact and near; ``"all"`` for the three, or names from "exact",
        "near", "similar"), ``threshold`` and ``similar_threshold``, ``keep_in``
        folders, ``keep_by`` rules (a list, or comma-separated as on the command line),
        ``exclude`` globs. Nothing is acted on. ``stats["not_indexed"]`` lists the
        ``paths`` with nothing indexed under them.

        Raises MissingFileError naming a path or keep_in folder that does not exist,
        FindSimilarError for an unknown tier or keep rule."""
        if isinstance(tiers, str):
            tiers = TIERS if tiers == "all" else [tiers]
        request = listing_request(
            _paths(paths or ()), list(tiers or ("exact", "near")), threshold,
            similar_threshold, _paths(keep_in), _words(keep_by, ","), _words(exclude, None))
        with self._backend() as backend:
            return _printed(list_duplicates(backend, request, progress))

    def status(self) -> dict[str, Any]:
        """What `findsimilar status --json` prints: ``indexed``, ``failed``, ``queued``,
        ``files``, ``data_dir``, ... (README, "Using it"). Like the command, it does not
        start a daemon: with none running the counts are read from the store."""
        if self.no_daemon:
            with self._backend() as backend:
                return _printed(backend.status())
        with _typed_errors(self.config):
            return _printed(running_status(self.config))

    # -- where the work runs ---------------------------------------------------------
    @contextmanager
    def _backend(self) -> Iterator[Backend]:
        """The backend for one call, its errors made typed: this process's engine (kept
        for the next call), or a connection to the daemon (closed after the call, so an
        idle client holds no connection the daemon would time out)."""
        with _typed_errors(self.config):
            if self.no_daemon:
                if self._local is None:
                    self._local = choose_backend(self.config, no_daemon=True)
                yield self._local
                return
            backend = choose_backend(self.config, no_daemon=False, autostart=self.autostart)
            try:
                yield backend
            finally:
                backend.close()


def _printed(obj: Any) -> Any:
    """``obj`` as a command prints it with --json, read back: ``"version"``, and a name
    that is not UTF-8 displayable with its exact bytes beside it (``"path_bytes"``;
    :func:`findsimilar.jsonout.restore` gives back the exact names)."""
    return json.loads(dumps(obj))


@contextmanager
def _typed_errors(config: Config) -> Iterator[None]:
    """The daemon's errors (sent as data) raised as the same types a run in this process
    raises; a damaged store said in words."""
    try:
        yield
    except RemoteError as exc:
        raise _typed(exc.as_data()) from None
    except FindSimilarError as exc:
        if type(exc).__name__ in _ERROR_KINDS:
            raise _typed(errors.error_data(exc)) from None
        raise
    except Exception as exc:  # SQLite's own error, from the engine in this process
        damage = store_damage(config.store_path, exc)
        if damage is None:
            raise
        raise damage from None


def _typed(data: dict[str, Any]) -> FindSimilarError:
    """The error an error entry (``error_data``) stands for, as a findsimilar.errors
    type (FindSimilarError itself for one it does not have), with its exit code."""
    kind = str(data.get("type") or "")
    cls = _ERROR_KINDS.get(kind) or getattr(errors, kind, None)
    if not (isinstance(cls, type) and issubclass(cls, FindSimilarError)):
        cls = FindSimilarError
    exc = cls(str(data.get("message") or kind or "the daemon gave no reason"))
    exc.exit_code = int(data.get("exit_code") or cls.exit_code)
    return exc


def _path(path: Any) -> str:
    """A path argument as the backends take it (bytes decoded as Python does: exact)."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise UsageError(f"not a path: {path!r}") from None
    return os.fsdecode(text) if isinstance(text, bytes) else text


def _paths(paths: Any) -> list[str]:
    """One path or several, as a list (a lone str is one path, not its characters)."""
    if isinstance(paths, str | bytes | os.PathLike):
        return [_path(paths)]
    return [_path(p) for p in paths]


def _words(value: str | Iterable[str], sep: str | None) -> list[str]:
    """A list of names: as given, or a string split at ``sep`` (None: one name)."""
    if isinstance(value, str):
        parts = value.split(sep) if sep else [value]
        return [p.strip() for p in parts if p.strip()]
    return [str(v) for v in value]


def _check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be a whole number, 1 or more, not {value!r}")
