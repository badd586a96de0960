"""A probe loaded by the real Nautilus (nautilus-python) or Caja (caja-python), beside
findsimilar's installed extension, for tests/integration/test_host_nautilus_caja.py.

The host loads every .py in its extensions folder into one Python, so this module sees
the extension the host loaded (``sys.modules``). Once the host has read the files of the
folder its window shows (their MIME types are known), it takes the host's own FileInfo
objects for each case of ``$FINDSIMILAR_PROBE_CASES`` (a JSON file), asks the installed
``FindSimilarMenu`` for its items as the host does and activates the ones asked for.
With a ``menu`` entry (Caja), it then works the host's own UI: Edit > Select All in the
window showing only photos, and a click on each item of the menu bar labelled "Find
similar photos" that Caja made itself (the extension's and the Scripts menu's). It writes
what it saw to the ``out`` file named there (JSON, written then renamed). It is not
findsimilar code: Debian's /usr/bin/python3 runs it, inside the host.
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
DEADLINE = time.monotonic() + CASES.get("timeout", 100)
MENU_TIME = 30.0  # for the host to fill its view and menus once it has read the files


def write(result: dict) -> None:
    out = CASES["out"]
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)


def caja_windows() -> list[object]:
    """Caja's browser windows (Caja is GTK 3; its UI is GtkUIManager menus)."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk
    return [w for w in Gtk.Window.list_toplevels()
            if w.get_visible() and type(w).__name__ == "CajaNavigationWindow"]


def window_titles() -> list[str]:
    """The titles of the host's windows (GTK 4 for Nautilus 43, GTK 3 for Caja)."""
    try:
        gi.require_version("Gtk", "3.0" if HOST == "caja" else "4.0")
        from gi.repository import Gtk
    except (ImportError, ValueError) as exc:  # Debian's gir1.2-gtk-4.0 is not a dependency
        return [f"(unknown: {exc})"]
    windows = (Gtk.Window.list_toplevels() if HOST == "caja"
               else list(Gtk.Window.get_toplevels()))
    return [f"{type(w).__name__}: {w.get_title()}" for w in windows]


def menubar_items(widget: object) -> list[tuple[object, object]]:
    """(menu item, its action) for every item of WIDGET's menu bar, submenus included."""
    from gi.repository import Gtk
    found = []
    if isinstance(widget, Gtk.MenuItem):
        action = widget.get_related_action()
        if action is not None:
            found.append((widget, action))
        submenu = widget.get_submenu()
        children = submenu.get_children() if submenu is not None else []
    elif isinstance(widget, Gtk.Container):
        children = widget.get_children()
    else:
        children = []
    for child in children:
        found.extend(menubar_items(child))
    return found


def file_infos(paths: list[str]) -> list[object | None]:
    """The host's own FileInfo for each path, None while the host has none: looked up,
    never created, so that the probe leaves the host's loading of the folder alone."""
    return [Host.FileInfo.lookup(Gio.File.new_for_path(p)) for p in paths]


def ready(infos: list[object | None]) -> bool:
    return all(i is not None and i.get_mime_type() not in ("", None, UNLOADED)
               for i in infos)


def query(extension: object, result: dict) -> None:
    """Asks the extension the host loaded for its items, case by case, as the host asks."""
    windows = caja_windows() if HOST == "caja" else [None]
    result["window"] = type(windows[0]).__name__ if windows and windows[0] else None
    menu = extension.FindSimilarMenu()
    for name, paths in CASES["cases"].items():
        infos = file_infos(paths)
        args = (windows[0], infos) if HOST == "caja" else (infos,)
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


def use_the_menu(result: dict) -> bool:
    """Caja's own way: Edit > Select All in the window showing only photos, then click
    every item of its menu bar labelled LABEL (our extension's, and the Scripts one).
    True once done; until the host has put our item in its menus, selects all again."""
    want = CASES["menu"]
    window = next(w for w in caja_windows() if w.get_title() == want["window_title"])
    items = menubar_items(window)
    ours = [(i, a) for i, a in items if a.get_label() == want["label"]]
    if not any(a.get_name() == want["action"] for _i, a in ours):
        next(a for _i, a in items if a.get_name() == "Select All").activate()
        result["menu"]["select_all"] += 1
        return False
    for item, action in ours:
        result["menu"]["clicked"].append({"action": action.get_name(),
                                          "label": action.get_label(),
                                          "sensitive": action.is_sensitive()})
        item.activate()
    return True


def tick(result: dict) -> bool:
    """One poll of the GLib main loop: False once the result is written."""
    global DEADLINE
    result["polls"] += 1
    try:
        extension = sys.modules.get(CASES["extension"])
        if extension is None:
            # The loader imports every extension before the main loop runs this.
            raise RuntimeError(f"{CASES['extension']} was not loaded (see the host's log)")
        every_path = [p for paths in CASES["cases"].values() for p in paths]
        infos = file_infos(every_path)
        if not result["cases"] and ready(infos):
            result["extension_file"] = extension.__file__
            query(extension, result)
            DEADLINE = min(DEADLINE, time.monotonic() + MENU_TIME)
        if result["cases"] and ("menu" not in CASES or use_the_menu(result)):
            pass
        elif time.monotonic() < DEADLINE:
            return True
        elif not result["cases"]:
            mimes = {p: i and i.get_mime_type() for p, i in zip(every_path, infos, strict=True)}
            result["error"] = (f"the host did not read the files in time: {mimes}; "
                               f"its windows: {window_titles()}")
        else:
            result["menu"]["error"] = f"{HOST} put no {CASES['menu']['label']!r} in its menus"
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
                             "polls": 0, "python": sys.version.split()[0],
                             "menu": {"select_all": 0, "clicked": [], "error": None}})
