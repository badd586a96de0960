"""The debouncer's settle rules, driven with explicit clocks (no sleeps, no timing)."""

from __future__ import annotations

from findsimilar.daemon.indexing.watcher import Delete, Move, Upsert, Watcher


def make() -> Watcher:
    return Watcher(lambda ops: None, settle_after_close=0.2, settle_quiet=2.0)


def test_a_closed_file_settles_quickly_and_a_file_still_open_waits():
    w = make()
    w.record_change("/p/done.jpg", closed=True)
    w.record_change("/p/open.jpg", closed=False)
    t = w._dirty["/p/done.jpg"][0]
    assert w._collect(t + 0.3) == [Upsert("/p/done.jpg")]
    assert w._collect(t + 1.0) == []
    assert w._collect(t + 2.1) == [Upsert("/p/open.jpg")]


def test_a_chmod_after_close_keeps_the_close_as_shutil_copy_does():
    w = make()
    w.record_change("/p/a.jpg", closed=True)
    w.record_attrib("/p/a.jpg")  # copystat after the data was written and closed
    t = w._dirty["/p/a.jpg"][0]
    assert w._collect(t + 0.3) == [Upsert("/p/a.jpg")]


def test_a_chmod_during_a_write_does_not_end_the_wait():
    w = make()
    w.record_change("/p/a.jpg", closed=False)
    w.record_attrib("/p/a.jpg")
    t = w._dirty["/p/a.jpg"][0]
    assert w._collect(t + 0.3) == []


def test_a_burst_of_events_for_one_file_becomes_one_upsert():
    w = make()
    for _ in range(50):
        w.record_change("/p/a.jpg", closed=False)
    w.record_change("/p/a.jpg", closed=True)
    t = w._dirty["/p/a.jpg"][0]
    assert w._collect(t + 0.3) == [Upsert("/p/a.jpg")]


def test_a_pending_change_follows_its_folder_when_moved_and_deletes_drop_it():
    w = make()
    w.record_change("/p/in/a.jpg", closed=True)
    w.record_change("/p/gone.jpg", closed=True)
    w.record_move("/p/in", "/p/out", is_dir=True)
    w.record_delete("/p/gone.jpg")
    t = w._dirty["/p/out/a.jpg"][0]
    # The move says a change was pending under it: the stored facts must not follow.
    assert w._collect(t + 0.3) == [Move("/p/in", "/p/out", settled=False),
                                   Delete("/p/gone.jpg"), Upsert("/p/out/a.jpg")]
