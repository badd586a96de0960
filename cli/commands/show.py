"""``findsimilar show``: a results page (and a folder of ranked links) for photos.

The page is written by ``showpage``; this module asks the backend (search, then the
pixel check ``same_picture`` for duplicate tiers), opens the page with ``xdg-open``
and, for file-manager integrations (``--notify``), turns every failure into a
desktop notification instead of a traceback.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

import click

from findsimilar.cli.backends import Backend, choose_backend, no_daemon_requested
from findsimilar.cli.commands.options import NO_DAEMON, result_options
from findsimilar.cli.failure import report_error
from findsimilar.cli.pages.showpage import QueryView, ResultView, prune_old_results, write_results
from findsimilar.config import cache_home, load_config
from findsimilar.errors import (
    EXIT_FAILURE,
    EXIT_MISSING_FILE,
    EXIT_NO_DAEMON,
    EXIT_STORE,
    FindSimilarError,
)
from findsimilar.jsonout import dumps
from findsimilar.safeio import hash_regular

__all__ = ["show_cmd"]

KEEP_RESULT_FOLDERS = 20
_RESULT_FOLDER = re.compile(r"[0-9a-f]{12}")
# xdg-open hands the page over and exits within a second or two; one still running after
# this long runs the browser itself (xdg-open's fallback for a plain $BROWSER).
_OPEN_WAIT = 5.0
_NOTIFY_TIMEOUT = 3.0  # a notification takes milliseconds; a stuck D-Bus must not hang us


class _ShowFailure(Exception):
    """A failure that ends the command: its message and exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@click.command("show")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
@result_options(default_top=20)
@click.option("--out", "out", type=click.Path(file_okay=False),
              help="Write the page here (default: $XDG_CACHE_HOME/findsimilar/show/<hash>/).")
@click.option("--print-path", is_flag=True, help="Print the page's path instead of opening it.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"page", "links", "queries": [{"query", "results": [{"rank", "path", '
                   '"score", "tier", "link"}]}]} instead of opening the page.')
@click.option("--notify", is_flag=True,
              help="Also report failures as a desktop notification (for file managers).")
@NO_DAEMON
def show_cmd(photos: tuple[str, ...], top: int, min_score: float | None, out: str | None,
             print_path: bool, as_json: bool, notify: bool, no_daemon: bool) -> None:
    """Show the photos most similar to each PHOTO on a page in your browser.

    Each PHOTO (indexed or not) is shown beside its ranked matches, with scores;
    exact copies and near duplicates (the same picture resized, re-encoded or
    lightly edited) are marked. A click opens the file. The matches are also
    linked, best first, in the folder `links/` next to the page. Pages live in
    $XDG_CACHE_HOME/findsimilar/show/ (the newest 20) unless --out says otherwise.
    If no browser can be opened (no xdg-open, no display), the page's path is
    printed with the reason and the exit code is 1.

    \b
    Examples:
      findsimilar show beach.jpg
      findsimilar show -k 50 --print-path a.jpg b.heic
      findsimilar show --json beach.jpg | jq -r '.queries[0].results[0].link'
    """
    try:
        code = _show(photos, top=top, min_score=min_score, out=out, print_path=print_path,
                     as_json=as_json, notify=notify, no_daemon=no_daemon)
    except _ShowFailure as exc:
        code = _report_failure(str(exc), exc.exit_code, notify)
    except Exception as exc:  # noqa: BLE001 - a file manager must get a message, not a trace
        if not notify:
            raise
        code = _report_failure(f"unexpected error: {type(exc).__name__}: {exc}", 1, notify)
    sys.exit(code)


def _show(photos: tuple[str, ...], *, top: int, min_score: float | None, out: str | None,
          print_path: bool, as_json: bool, notify: bool, no_daemon: bool) -> int:
    """Write the page; print, open or describe it. Returns the exit code."""
    answers = _answers(photos, top, min_score, no_daemon)
    errors = [(q.error, code) for q, code in answers if q.error is not None]
    for message, _code in errors:
        report_error(message)
    queries = [q for q, _ in answers]
    page: Path | None = None
    if len(errors) < len(queries):
        page = _write(queries, out, photos)
    if as_json:
        click.echo(dumps(_as_json(queries, page)))
    elif page is not None and print_path:
        click.echo(str(page))
    elif page is not None:
        try:
            _open(page)
        except _ShowFailure as exc:  # the page is there: said after the queries' errors
            errors.append((str(exc), exc.exit_code))
            report_error(str(exc))
    if errors:
        first, code = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        if notify:
            _notify(f"{first}{more}")
        return code
    return 0


def _answers(photos: tuple[str, ...], top: int, min_score: float | None,
             no_daemon: bool) -> list[tuple[QueryView, int]]:
    """Search each photo and mark duplicate tiers; a query that fails carries its error
    and exit code. Raises _ShowFailure if no backend is available."""
    answers: dict[str, tuple[QueryView, int]] = {}
    readable = []
    for photo in photos:
        problem = _not_a_file(photo)
        if problem:
            answers[photo] = (QueryView(os.path.abspath(photo), error=problem), EXIT_MISSING_FILE)
        else:
            readable.append(photo)
    if readable:
        try:
            backend = _start_backend(no_daemon)
            try:
                found = backend.search(readable, top, min_score)
                for photo, raw in zip(readable, found, strict=True):
                    answers[photo] = _answer(backend, raw)
            finally:
                backend.close()
        except FindSimilarError as exc:
            raise _ShowFailure(str(exc), exc.exit_code) from None
    return [answers[p] for p in photos]


def _start_backend(no_daemon: bool) -> Backend:
    try:
        return choose_backend(load_config(), no_daemon=no_daemon)
    except OSError as exc:  # e.g. the data dir cannot be made: no daemon, no store
        local = no_daemon_requested(no_daemon)
        raise _ShowFailure(
            f"cannot {'open the store' if local else 'start the daemon'}: {exc}",
            EXIT_STORE if local else EXIT_NO_DAEMON) from None


def _not_a_file(photo: str) -> str | None:
    path = os.path.abspath(photo)
    if not os.path.exists(path):
        return f"no such file: {path}"
    if not os.path.isfile(path):
        return f"not a regular file: {path}"
    return None


def _answer(backend: Backend, raw: dict[str, Any]) -> tuple[QueryView, int]:
    query = str(raw["query"])
    error = raw.get("error")
    if error:
        return QueryView(query, error=str(error["message"])), int(error.get("exit_code", 1))
    tiers = _tiers(backend, query, raw["results"])
    results = [ResultView(rank=i, path=m["path"], score=float(m["score"]), tier=tiers[m["path"]])
               for i, m in enumerate(raw["results"], 1)]
    return QueryView(query, results), 0


# --- duplicate tiers --------------------------------------------------------------------


def _tiers(backend: Backend, query: str, matches: list[dict[str, Any]]) -> dict[str, str]:
    """Each match's tier: "exact" (the same bytes), "near" (the pixel check passes) or
    "similar". If the check cannot run, matches are "similar" unless identical. Only
    matches at the serving model's candidate cosine or above are checked, as in `dupes`
    (the daemon knows the model: the scores go with the paths)."""
    scores: dict[str, float | None] = {}
    threshold = 1.0
    if matches:
        try:
            verdict = backend.call("same_picture", {
                "query": query, "paths": [m["path"] for m in matches],
                "cosines": [float(m["score"]) for m in matches]})
            scores, threshold = verdict["scores"], float(verdict["threshold"])
        except FindSimilarError as exc:
            click.echo(f"findsimilar: warning: duplicates not checked: {exc}", err=True)
    identical = _identical_files(query, [m["path"] for m in matches])
    tiers = {}
    for m in matches:
        score = scores.get(m["path"])
        tiers[m["path"]] = ("exact" if m["path"] in identical else
                            "near" if score is not None and score >= threshold else "similar")
    return tiers


def _identical_files(query: str, paths: list[str]) -> set[str]:
    """The ``paths`` whose bytes equal the query's (only same-size files are hashed)."""
    try:
        size = os.path.getsize(query)
    except OSError:
        return set()
    same_size = [p for p in paths if _size(p) == size]
    if not same_size:
        return set()
    want = _digest(query)
    return {p for p in same_size if want is not None and _digest(p) == want}


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _digest(path: str) -> str | None:
    """The content hash of the regular file at ``path`` (safeio: a FIFO or device is
    never read), or None if it cannot be read."""
    try:
        return hash_regular(path, follow_symlinks=True)[0]
    except OSError:
        return None


# --- writing, opening, telling ----------------------------------------------------------


def _write(queries: list[QueryView], out: str | None, photos: tuple[str, ...]) -> Path:
    cache = _results_cache()
    folder = Path(out) if out else cache / _query_key(photos)
    try:
        page = write_results(queries, folder)
        if not out:
            prune_old_results(cache, KEEP_RESULT_FOLDERS, _RESULT_FOLDER)
    except OSError as exc:
        raise _ShowFailure(f"cannot write the results page in {folder}: {exc}", 1) from None
    return page


def _results_cache() -> Path:
    return cache_home() / "findsimilar" / "show"


def _query_key(photos: tuple[str, ...]) -> str:
    """The same set of photos, in any order, gets the same folder."""
    paths = sorted({os.fsencode(os.path.abspath(p)) for p in photos})
    return hashlib.blake2b(b"\0".join(paths), digest_size=6).hexdigest()


def _as_json(queries: list[QueryView], page: Path | None) -> dict[str, Any]:
    links = str(page.parent / "links") if page else None
    out = []
    for q in queries:
        entry: dict[str, Any] = {"query": q.query, "results": [
            {"rank": r.rank, "path": r.path, "score": r.score, "tier": r.tier, "link": r.link}
            for r in q.results]}
        if q.error is not None:
            entry["error"] = q.error
        out.append(entry)
    return {"page": str(page) if page else None, "links": links, "queries": out}


def _open(page: Path) -> None:
    """Hand the page to the desktop's browser through ``xdg-open``. Raises _ShowFailure
    (exit code 1) if there is no ``xdg-open`` or it fails (no display, no browser): the
    page's path is then printed on stdout for the user to open."""
    opener = shutil.which("xdg-open")
    if opener is None:
        _cannot_open(page, "xdg-open is not installed")
    with tempfile.TemporaryFile() as said, open(os.devnull, "r+b") as devnull:
        # A session of its own: closing the terminal or the file manager that ran us
        # does not take the browser with it. Its stderr goes to a file, not a pipe: a
        # browser it starts may keep that open for as long as it runs.
        proc = subprocess.Popen([opener, str(page)], stdin=devnull, stdout=devnull,
                                stderr=said, start_new_session=True, close_fds=True)
        try:
            code = proc.wait(timeout=_OPEN_WAIT)
        except subprocess.TimeoutExpired:
            code = 0  # still running: the browser it started in the foreground
        if code != 0:
            said.seek(0)
            why = said.read(2000).decode(errors="replace").strip().splitlines()
            _cannot_open(page, f"xdg-open failed (exit code {code})"
                               + (f": {why[-1].strip()}" if why else ""))
    click.echo(f"findsimilar: opened {page}", err=True)


def _cannot_open(page: Path, why: str) -> NoReturn:
    """Print the page's path on stdout (for the user to open) and fail with ``why``."""
    click.echo(str(page))
    raise _ShowFailure(f"cannot open the page in a browser: {why}; open it yourself: {page}",
                       EXIT_FAILURE)


def _report_failure(message: str, code: int, notify: bool) -> int:
    report_error(message)
    if notify:
        _notify(message)
    return code


def _notify(message: str) -> None:
    """A desktop notification, if notify-send is there; never waits long, never fails."""
    sender = shutil.which("notify-send")
    if sender is None:
        return
    try:
        subprocess.run([sender, "--app-name=findsimilar", "--", f"findsimilar: {message}"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=_NOTIFY_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return
