"""Choose a menu item in a running GTK host app the way a user does, through AT-SPI.

Runs with Debian's Python (python3-pyatspi) on the host's display and session bus; the
host must run with its accessibility bridge (NO_AT_BRIDGE not 1)::

    choose_menu_item.py APP SELECT_ALL SELECTED HOW WHERE ITEM

1. waits for APP's window on the accessibility bus;
2. chooses the menu bar's SELECT_ALL ("Edit/Select All") until some label or status bar
   of the window matches the regular expression SELECTED (the folder may still be
   loading: the choice is repeated until it does);
3. opens a menu: HOW is --context-menu (the keyboard's Shift+F10, sent by xdotool to the
   X window titled WHERE), --right-click (xdotool's right click on the file list row or
   icon whose name starts with WHERE) or --menu (the menu bar's menu WHERE);
4. activates ITEM there ("Submenu/Item" for one in a submenu), which must be shown and
   sensitive.

Prints the labels of the menu it opened. Exits 1, saying what it saw, when a step does
not happen within the timeout.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pyatspi

TIMEOUT = 30.0


def fail(message: str) -> None:
    print(f"choose_menu_item: {message}", file=sys.stderr)
    sys.exit(1)


def wait(what, probe, timeout=TIMEOUT):
    """PROBE's first true result; fails with WHAT after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            found = probe()
        except Exception as exc:  # an accessible went away while we looked: look again
            found, last = None, exc
        if found:
            return found
        if time.monotonic() > deadline:
            fail(f"{what() if callable(what) else what} not seen within {timeout} s"
                 + (f" (last error: {last})" if last else ""))
        time.sleep(0.1)


def children(acc):
    return [c for c in (acc.getChildAtIndex(i) for i in range(acc.childCount)) if c is not None]


def find_all(acc, pred, depth=0):
    if pred(acc):
        yield acc
    if depth < 40:
        for child in children(acc):
            yield from find_all(child, pred, depth + 1)


def find(acc, pred):
    return next(find_all(acc, pred), None)


def frame_of(app_name):
    for app in children(pyatspi.Registry.getDesktop(0)):
        if app.name == app_name:
            for window in children(app):
                if window.getRoleName() == "frame":
                    return app, window
    return None


def texts(frame):
    return [a.name for a in find_all(frame, lambda a: a.getRoleName() in ("label", "status bar"))
            if a.name]


def showing(item):
    states = item.getState()
    return (states.contains(pyatspi.STATE_VISIBLE) and states.contains(pyatspi.STATE_SENSITIVE))


def menu_bar_menu(frame, name):
    return find(frame, lambda a: a.getRoleName() == "menu" and a.name == name
                and a.parent is not None and a.parent.getRoleName() == "menu bar")


def open_menu(menu):
    """Opens a menu bar menu (GTK makes its items when it opens) and returns its items."""
    menu.queryAction().doAction(0)
    return wait(f"the items of menu {menu.name!r}",
                lambda: [c for c in children(menu) if c.name] or None, timeout=10)


def choose(items, label, where):
    item = next((c for c in items if c.name == label), None)
    if item is None:
        fail(f"no {label!r} in {where}, which shows "
             f"{[c.name for c in items if c.name and showing(c)]}")
    if not showing(item):
        fail(f"{label!r} is in {where} but hidden or greyed out")
    item.queryAction().doAction(0)


def select_all(frame, path, selected):
    menu_name, item_name = path.split("/")
    menu = wait(f"the menu {menu_name!r}", lambda: menu_bar_menu(frame, menu_name))
    pattern = re.compile(selected)

    def attempt():  # then up to 2 s for the window to say so
        items = open_menu(menu)
        item = next((c for c in items if c.name == item_name), None)
        if item is None or not showing(item):  # greyed out while the folder loads
            subprocess.run(["xdotool", "key", "Escape"], check=True)  # close the menu
            return False
        item.queryAction().doAction(0)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if any(pattern.search(t) for t in texts(frame)):
                return True
            time.sleep(0.1)
        return False
    wait(lambda: f"Edit > {item_name!r} making the window say {selected!r} (it says "
         f"{texts(frame)}; the menu has {[c.name for c in children(menu) if c.name]})", attempt)


def popup(app):
    """The popup menu APP shows now, if any."""
    for window in children(app):
        for menu in children(window):
            if (menu.getRoleName() == "menu" and menu.childCount
                    and menu.getState().contains(pyatspi.STATE_SHOWING)):
                return menu
    return None


def context_menu(app, frame, how, where):
    """Opens the context menu: Shift+F10 in the X window titled WHERE (--context-menu),
    or a right click on the file whose row or icon is named WHERE... (--right-click);
    again if the first press was lost."""
    if how == "--context-menu":
        windows = subprocess.run(["xdotool", "search", "--onlyvisible", "--name",
                                  f"^{re.escape(where)}$"],
                                 capture_output=True, text=True).stdout.split()
        if not windows:
            fail(f"no visible X window named {where!r}")
        press = ["xdotool", "windowfocus", "--sync", windows[0], "key", "shift+F10"]
    else:
        cell = wait(f"a file named {where!r}...", lambda: find(
            frame, lambda a: a.getRoleName() in ("table cell", "icon")
            and a.name.startswith(where)))
        box = cell.queryComponent().getExtents(pyatspi.DESKTOP_COORDS)
        press = ["xdotool", "mousemove", "--sync", str(box.x + min(box.width // 2, 10)),
                 str(box.y + box.height // 2), "click", "3"]

    def open_it():
        subprocess.run(press, check=True)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            menu = popup(app)
            if menu is not None:
                return menu
            time.sleep(0.1)
        return None
    return wait(f"the context menu ({how} {where})", open_it)


def main():
    app_name, select_path, selected, how, where, label = sys.argv[1:7]
    app, frame = wait(f"{app_name}'s window on the accessibility bus",
                      lambda: frame_of(app_name), timeout=60)
    select_all(frame, select_path, selected)
    if how in ("--context-menu", "--right-click"):
        items, place = children(context_menu(app, frame, how, where)), "the context menu"
    elif how == "--menu":
        menu = wait(f"the menu {where!r}", lambda: menu_bar_menu(frame, where))
        items, place = open_menu(menu), f"menu {where!r}"
    else:
        fail(f"unknown mode {how!r}")
    print("\n".join(c.name for c in items if c.name and showing(c)))
    *submenus, label = label.split("/")
    for name in submenus:  # "Plugins/Find similar photos": the item in a submenu
        choose(items, name, place)  # opens it
        submenu = next(c for c in items if c.name == name)
        items, place = wait(f"the items of submenu {name!r}",
                            lambda s=submenu: [c for c in children(s) if c.name] or None), \
            f"submenu {name!r}"
    choose(items, label, place)


if __name__ == "__main__":
    main()
