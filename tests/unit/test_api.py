"""The verbs' dispatch (daemon/service/api.py): one command path for the daemon and for
--no-daemon, errors as data built in one place. A real Engine on a temporary store."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from findsimilar.config import Config
from findsimilar.daemon.engine import Engine
from findsimilar.daemon.indexing.roots import Roots
from findsimilar.daemon.indexing.watcher import Watcher
from findsimilar.daemon.service.api import BadArguments, DaemonVerbs, LocalVerbs, UnknownCommand
from findsimilar.daemon.service.scheduler import Scheduler
from findsimilar.daemon.service.work import Listings
from findsimilar.daemon.storage.diskspace import DiskFull
from findsimilar.daemon.storage.storeaccess import StoreAccess
from findsimilar.errors import Cancelled


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    config = Config(data_dir=tmp_path_factory.mktemp("api") / "data")
    with Engine(config) as opened:
        yield opened


def daemon_verbs(engine: Engine) -> DaemonVerbs:
    config = engine.config
    disk, stopping = DiskFull(config.data_dir), threading.Event()
    scheduler = Scheduler(config.store_path, disk, StoreAccess(config.store_path), stopping,
                          on_damage=lambda error: None)
    return DaemonVerbs(config, engine, Listings(engine), scheduler=scheduler,
                       folders=Roots(lambda: [], lambda paths: None),
                       watcher=Watcher(lambda ops: None), roots=lambda: [],
                       status=lambda: {"roots": []}, stopping=stopping, disk=disk,
                       on_damage=lambda error: None)


def test_an_unknown_verb_and_arguments_that_do_not_fit_are_typed_errors(engine):
    verbs = LocalVerbs(engine)
    with pytest.raises(UnknownCommand):
        verbs.call("frobnicate", {})
    with pytest.raises(BadArguments):
        verbs.call("search", {"bogus": 1})
    with pytest.raises(BadArguments):  # the caller's stop check is not an argument
        verbs.call("search", {"paths": [], "should_stop": True})
    with pytest.raises(BadArguments):
        verbs.call("search", ["not", "an", "object"])  # type: ignore[arg-type]


def test_a_search_error_entry_is_the_same_data_in_process_and_from_the_daemon(
        engine, tmp_path):
    missing, folder = str(tmp_path / "missing.jpg"), tmp_path / "folder.jpg"
    folder.mkdir()
    args = {"paths": [missing, str(folder)], "k": 3}
    local = LocalVerbs(engine).call("search", args)
    reply = daemon_verbs(engine).handle({"v": 1, "command": "search", "args": args})
    assert reply["ok"] is True and reply["result"] == local
    assert local[0] == {"query": missing, "error": {
        "type": "MissingFileError", "message": f"no such file: {missing}", "exit_code": 3}}
    assert local[1]["error"]["type"] == "NotRegularFileError"
    assert local[1]["error"]["exit_code"] == 3 and str(folder) in local[1]["error"]["message"]


def test_a_cancellable_verb_stops_between_units_of_work(engine, tmp_path):
    paths = [str(tmp_path / f"missing-{i}.jpg") for i in range(5)]
    with pytest.raises(Cancelled, match="after 1 of 5"):
        LocalVerbs(engine).call("search", {"paths": paths}, should_stop=lambda: True)


def test_the_daemon_answers_errors_as_data_and_refuses_requests_for_another_daemon(engine):
    verbs = daemon_verbs(engine)
    unknown = verbs.handle({"v": 1, "command": "frobnicate"})
    assert unknown["ok"] is False and unknown["error"]["type"] == "UnknownCommand"
    bad = verbs.handle({"v": 1, "command": "search", "args": {"bogus": 1}})
    assert bad["error"]["type"] == "BadArguments" and bad["error"]["exit_code"] == 2
    elsewhere = verbs.handle({"v": 1, "command": "ping", "data_dir": "/somewhere/else"})
    assert elsewhere["error"]["type"] == "WrongDaemon"
    assert "/somewhere/else" in elsewhere["error"]["message"]
    ping = verbs.handle({"v": 1, "command": "ping", "data_dir": str(engine.config.data_dir)})
    assert ping["ok"] is True and ping["result"]["pid"] == os.getpid()


def test_in_process_status_says_no_daemon_and_nothing_queued(engine):
    status = LocalVerbs(engine).call("status", {})
    assert status["daemon"] is None and status["queued"] == 0
    assert status["data_dir"] == str(engine.config.data_dir)


def test_the_daemon_refuses_to_index_or_reindex_what_does_not_exist(engine, tmp_path):
    verbs = daemon_verbs(engine)
    for command, args in (("index", {"paths": [str(tmp_path / "nope")]}),
                          ("reindex", {"paths": [str(tmp_path / "nope")]})):
        reply = verbs.handle({"v": 1, "command": command, "args": args})
        assert reply["error"]["type"] == "MissingFileError", reply
        assert reply["error"]["exit_code"] == 3


def test_watching_a_path_that_is_no_folder_is_refused(engine, tmp_path: Path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    reply = daemon_verbs(engine).handle({"v": 1, "command": "watch_add",
                                         "args": {"path": str(photo)}})
    assert reply["error"] == {"type": "MissingFileError",
                              "message": f"not a folder: {photo}", "exit_code": 3}


def test_listings_running_at_once_keep_their_progress_apart(engine):
    """Two `dupes` listings whose progress is equal (both 0 of 0) end in either order;
    each keeps and removes its own entry (was: the first equal one, so the other's
    progress vanished from status and its end raised ValueError)."""
    started, moved = threading.Semaphore(0), threading.Semaphore(0)
    go = {"a": threading.Event()}
    end = {name: threading.Event() for name in ("a", "b")}

    class Held:
        """An engine whose listing steps when the test says, with the real engine's
        result."""

        def duplicates(self, options, report, should_stop):  # noqa: ANN001, ANN202
            name = options.paths[0]
            report(0, 0)
            started.release()
            if name == "a":  # b ends as it began: equal to a's progress
                go[name].wait(10)
                report(5, 10)
                moved.release()
            end[name].wait(10)
            return engine.duplicates(options, report, should_stop=should_stop)

    from findsimilar.daemon.dupes.grouping import DupesOptions

    listings = Listings(Held())  # type: ignore[arg-type]
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            listings.run(DupesOptions(paths=[name]), lambda: False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = {n: threading.Thread(target=run, args=(n,)) for n in ("a", "b")}
    for t in threads.values():
        t.start()
        assert started.acquire(timeout=10)
    assert listings.progress() == [{"done": 0, "total": 0}] * 2
    end["b"].set()
    threads["b"].join(10)
    assert listings.progress() == [{"done": 0, "total": 0}]  # a's own entry
    go["a"].set()
    assert moved.acquire(timeout=10)
    assert listings.progress() == [{"done": 5, "total": 10}]
    end["a"].set()
    threads["a"].join(10)
    assert not errors and listings.progress() == []
