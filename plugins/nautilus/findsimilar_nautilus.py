"""Find similar photos: a Nautilus extension (nautilus-python), installed by findsimilar.

Adds "Find similar photos" to the context menu when every selected file is a local
image, and runs ``findsimilar show --notify -- FILE...`` for them without waiting:
the results page opens in the browser, failures (no daemon, say) come as a desktop
notification. Works with Nautilus 43+ (``get_file_items(files)``) and older ones
(``get_file_items(window, files)``). Restart Nautilus (``nautilus -q``) to load it.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import Any

from gi.repository import GObject, Nautilus

# The findsimilar to run, written by `findsimilar integrate install nautilus`: Nautilus
# does not run inside findsimilar's virtualenv, so PATH may not find it.
FINDSIMILAR: list[str] = ["@FINDSIMILAR@"]
LABEL = "Find similar photos"


def selected_images(files: Sequence[Any]) -> list[str] | None:
    """Returns the local paths of FILES if every one is an image, else None."""
    paths = []
    for info in files:
        mime = info.get_mime_type() or ""
        location = info.get_location()
        path = location.get_path() if location is not None else None
        if not mime.startswith("image/") or not path:
            return None
        paths.append(path)
    return paths or None


def launch(paths: Sequence[str]) -> None:
    """Starts findsimilar for PATHS in the background (an argv list: no word-splitting)."""
    argv = [*FINDSIMILAR, "show", "--notify", "--", *paths]
    # A throwaway shell starts findsimilar in the background and exits at once, so
    # Nautilus reaps it right here and findsimilar (adopted by init) never lingers as
    # a zombie child of the long-lived file manager.
    trampoline = subprocess.Popen(
        ["/bin/sh", "-c", '"$@" &', "findsimilar-launch", *argv],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True)
    trampoline.wait()


class FindSimilarMenu(GObject.GObject, Nautilus.MenuProvider):
    """The context-menu item."""

    def get_file_items(self, *args: Any) -> list[Any]:
        # Nautilus 43+ passes (files); Nautilus 3 passed (window, files).
        paths = selected_images(args[-1]) if args else None
        if paths is None:
            return []
        item = Nautilus.MenuItem(name="FindSimilar::find_similar_photos", label=LABEL,
                                 tip="Show the indexed photos that look like these")
        item.connect("activate", self._activate, paths)
        return [item]

    def _activate(self, _item: Any, paths: list[str]) -> None:
        launch(paths)
