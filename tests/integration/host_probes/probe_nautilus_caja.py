"""A probe loaded by the real Nautilus (nautilus-python) or Caja (caja-python), beside
findsimilar's installed extension, for tests/integration/test_host_nautilus_caja.py.

The host loads every .py in its extensions folder into one Python, so this module sees
the extension the host loaded (``sys.modules``). Once the host has read the files of the
folder its window shows (their MIME types are known), it builds the host's own FileInfo
objects for each case of ``$FINDSIMILAR_PROBE_CASES`` (a JSON file), asks the installed
``FindSimilarMenu`` for its items as the host does, activates the ones asked for, and
writes what it saw to the ``out`` file named there (JSON, written then renamed). It is
not findsimilar code: Debian's /usr/bin/python3 runs it, inside the host.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

import gi
from gi.repository import Gio, GLib, GObject

HOST = os.environ.get("FINDSIMILAR_PROBE_HOST", "nautilus")
if HOST == "caja":
    gi.require_version("Caja", "2.0")
    from gi.repository import Caja as Host
else:
    gi.require_version("Nautilus", "4.0")
    from gi.repository import Nautilus as Host

UNLOADED = "application/octet-stream"  # what a FileInfo says before its info is read
with open(os.environ["FINDSIMILAR_PROBE_CASES"], encoding="utf-8") as _f:
    CASES = json.load(_f)
DEADLINE = time.monotonic() + CASES.get("timeout", 45)


def write(result: dict) -> None:
    out = CASES["out"]
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)


def host_window() -> object | None:
    """The host's own window (Caja passes it to get_file_items), if one is found."""
    try:
        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk
        windows = [w for w in Gtk.Window.list_toplevels() if w.get_visible()]
        return windows[0] if windows else None
    except (ImportError, ValueError):
        return None


def file_infos(paths: list[str]) -> list[object]:
    return [Host.FileInfo.create(Gio.File.new_for_path(p)) for p in paths]


def ready(infos: list[object]) -> bool:
    return all(i.get_mime_type() not in ("", None, UNLOADED) for i in infos)


def query(extension: object, result: dict) -> None:
    window = host_window() if HOST == "caja" else None
    result["window"] = type(window).__name__ if window is not None else None
    menu = extension.FindSimilarMenu()
    for name, paths in CASES["cases"].items():
        infos = file_infos(paths)
        args = (window, infos) if HOST == "caja" else (infos,)
        items = menu.get_file_items(*args)
        result["cases"][name] = {
            "file_info_types": [type(i).__name__ for i in infos],
            "mime_types": [i.get_mime_type() for i in infos],
            "items": [{"name": it.props.name, "label": it.props.label,
                       "tip": it.props.tip, "type": type(it).__name__} for it in items],
        }
        if name in CASES.get("activate", ()):
            for item in items:
                item.activate()
            result["activated"].append(name)


def tick(result: dict) -> bool:
    """One poll of the GLib main loop: False once the result is written."""
    result["polls"] += 1
    try:
        extension = sys.modules.get(CASES["extension"])
        if extension is None:
            # The loader imports every extension before the main loop runs this.
            raise RuntimeError(f"{CASES['extension']} was not loaded (see the host's log)")
        every_path = [p for paths in CASES["cases"].values() for p in paths]
        infos = file_infos(every_path)
        if ready(infos):
            result["extension_file"] = extension.__file__
            query(extension, result)
        elif time.monotonic() < DEADLINE:
            return True
        else:
            mimes = {p: i.get_mime_type() for p, i in zip(every_path, infos, strict=True)}
            result["error"] = f"the host did not read the files in time: {mimes}"
    except Exception:  # noqa: BLE001 - reported to the test, which fails with it
        result["error"] = traceback.format_exc()
    write(result)
    return False


class KeepLoaded(GObject.GObject, Host.ColumnProvider):
    """A provider of no columns: the loader unloads Python when no extension registers a
    provider (ours failing to load, say), and this probe must still report then."""

    def get_columns(self) -> list[object]:
        return []


GLib.timeout_add(100, tick, {"host": HOST, "cases": {}, "activated": [], "error": None,
                             "polls": 0, "python": sys.version.split()[0]})
