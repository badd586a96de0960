"""The photo edits the benchmarks apply, and the shared photos: they live in
tests/photo_edits.py, since the tests apply the same edits. The scripts here put bench/
on sys.path and ``from edits import ...``; this module finds the repository's tests/.
"""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = str(Path(__file__).resolve().parents[1])
if _REPO not in sys.path:
    sys.path.append(_REPO)  # appended: an installed findsimilar still comes first

from tests.photo_edits import (  # noqa: E402
    EDITS,
    NEAR_EDITS,
    SAME_SCENE_EDITS,
    SHARED,
    apply_edit,
    apply_seeded_edit,
    shared_groups,
    shared_photos,
)

__all__ = ["EDITS", "NEAR_EDITS", "SAME_SCENE_EDITS", "SHARED", "apply_edit", "apply_seeded_edit",
           "shared_groups", "shared_photos"]
