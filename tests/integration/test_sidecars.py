"""Sidecars travel with their photo (issue 16, item 3), through one real daemon shared by the
module and the real CLI in its own process, on real photos (an exact pair and a near pair,
each with darktable/digiKam XMP and RawTherapee .pp3 sidecars of both forms): `dupes
--action trash --apply` and `--action move`, then `dupes undo`, give every byte back; a
kept photo's sidecars and a shared `NAME.xmp` whose other photo stays are never touched;
a sidecar that cannot go (immutable, as root) fails its photo's step with nothing parted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import shared

from .daemon_harness import DaemonProcess, module_daemon
from .test_action_facts import _cli_with, bmp, logs_now, new_log, own_env, pair, state
from .test_dupes_apply import group_of

Cli = Callable[..., subprocess.CompletedProcess]
XMP = ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta '
       'xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-'
       'ns#"><rdf:Description rdf:about="" xmp:Rating="{}"/></rdf:RDF></x:xmpmeta>\n'
       '<?xpacket end="w"?>\n')


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with module_daemon(tmp_path_factory.mktemp("sidecars")) as daemon:
        yield daemon


@pytest.fixture
def cli(daemon: DaemonProcess, tmp_path: Path) -> Cli:
    return _cli_with(own_env(daemon, tmp_path))


def sidecar(path: Path, rating: int) -> Path:
    path.write_text(XMP.format(rating), encoding="utf-8")
    return path


def library(lib: Path) -> dict[str, Path]:
    """x: an exact pair (BMPs; the older kept), each with its own NAME.bmp.xmp, the copy
    also a NAME.bmp.pp3 and a shared NAME.xmp that another photo (copy.png, a different
    picture) holds too; n: a photo and its half-size JPEG copy (the photo kept), the copy
    with NAME.JPG.xmp (another case) and NAME.pp3."""
    p: dict[str, Path] = {}
    p["x_keep"], p["x_copy"] = pair(lib / "x", "skimage/chelsea.png")
    p["x_keep.xmp"] = sidecar(lib / "x" / "keep.bmp.xmp", 5)
    p["x_copy.xmp"] = sidecar(lib / "x" / "copy.bmp.xmp", 1)
    p["x_copy.pp3"] = lib / "x" / "copy.bmp.pp3"
    p["x_copy.pp3"].write_text("[Version]\nAppVersion=5.9\n\n[Exposure]\nCompensation=0.5\n")
    p["x_stem"] = sidecar(lib / "x" / "copy.xmp", 2)
    p["x_other"] = bmp(lib / "x" / "copy.png", "skimage/coffee.png")
    p["n_keep"] = lib / "n" / "fruits.jpg"
    p["n_keep"].parent.mkdir()
    shutil.copy2(shared("opencv/fruits.jpg"), p["n_keep"])
    p["n_copy"] = lib / "n" / "fruits-small.jpg"
    with Image.open(p["n_keep"]) as im:
        im.resize((im.width // 2, im.height // 2)).save(p["n_copy"], quality=90)
    p["n_copy.xmp"] = sidecar(lib / "n" / "fruits-small.JPG.xmp", 3)
    p["n_stem"] = sidecar(lib / "n" / "fruits-small.pp3", 4)
    return p


def indexed(cli: Cli, lib: Path) -> dict[str, Path]:
    p = library(lib)
    cli("index", "-q", str(lib))
    groups = json.loads(cli("dupes", str(lib), "--json").stdout)["groups"]
    assert sorted(g["tier"] for g in groups) == ["exact", "near"]
    assert group_of(groups, p["x_copy"])["keep"] == str(p["x_keep"])
    assert group_of(groups, p["n_copy"])["keep"] == str(p["n_keep"])
    assert not any(f.endswith((".xmp", ".pp3")) for g in groups for f in g["files"])
    return p


def test_trash_takes_the_sidecars_and_undo_brings_every_byte_back(
        daemon: DaemonProcess, cli: Cli, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    p = indexed(cli, lib)
    original, before = state(lib), logs_now(daemon)

    plan = json.loads(cli("dupes", str(lib), "--action", "trash", "--json").stdout)
    sidecars = {s["path"]: sorted(s["sidecars"]) for s in plan["actions"]["plan"]}
    assert sidecars == {str(p["x_copy"]): [str(p["x_copy.pp3"]), str(p["x_copy.xmp"])],
                        str(p["n_copy"]): [str(p["n_copy.xmp"]), str(p["n_stem"])]}
    dry = cli("dupes", str(lib), "--action", "trash")
    assert "with its sidecars copy.bmp.pp3, copy.bmp.xmp" in dry.stdout
    assert state(lib) == original

    run = cli("dupes", str(lib), "--action", "trash", "--apply")
    assert "trash: 2 done, 0 skipped, 0 failed" in run.stderr
    gone = {"x_copy", "x_copy.xmp", "x_copy.pp3", "n_copy", "n_copy.xmp", "n_stem"}
    for name, path in p.items():
        assert path.exists() == (name not in gone), name
    # The keeper's sidecar and the NAME.xmp that copy.png still holds: untouched.
    assert state(lib)[str(p["x_keep.xmp"])] == original[str(p["x_keep.xmp"])]
    assert state(lib)[str(p["x_stem"])] == original[str(p["x_stem"])]
    trashed = tmp_path / "xdg" / "Trash" / "files"
    assert sorted(f.name for f in trashed.iterdir()) == sorted(p[n].name for n in gone)

    undo = cli("dupes", "undo", str(new_log(daemon, before)))
    assert "undid 6 of 6 steps" in undo.stdout
    assert state(lib) == original
    assert list(trashed.iterdir()) == []


def test_move_and_undo_and_an_immovable_sidecar_fails_its_step_with_nothing_parted(
        daemon: DaemonProcess, cli: Cli, tmp_path: Path) -> None:
    lib, dest = tmp_path / "lib", tmp_path / "dupes"
    p = indexed(cli, lib)
    original, before = state(lib), logs_now(daemon)

    cli("dupes", str(lib), "--move-to", str(dest), "--apply")
    where = {f.name: f.parent.name for f in dest.rglob("*") if f.is_file()}
    assert where == {"copy.bmp": "x", "copy.bmp.xmp": "x", "copy.bmp.pp3": "x",
                     "fruits-small.jpg": "n", "fruits-small.JPG.xmp": "n",
                     "fruits-small.pp3": "n"}
    assert "undid 6 of 6 steps" in cli("dupes", "undo", str(new_log(daemon, before))).stdout
    assert state(lib) == original and not any(f.is_file() for f in dest.rglob("*"))

    if subprocess.run(["chattr", "+i", str(p["x_copy.pp3"])]).returncode != 0:
        pytest.skip("cannot make a file immutable here (chattr +i needs root and ext4/XFS)")
    try:
        before = logs_now(daemon)
        run = cli("dupes", str(lib), "--move-to", str(dest), "--apply", check=False)
        assert run.returncode == 1
        assert (f"failed: {p['x_copy']}: its sidecar {p['x_copy.pp3']} cannot go with it "
                "(Operation not permitted") in run.stdout
        assert "move: 1 done, 0 skipped, 1 failed" in run.stderr
        assert {f.name for f in dest.rglob("*") if f.is_file()} == {
            "fruits-small.jpg", "fruits-small.JPG.xmp", "fruits-small.pp3"}
        for name in ("x_copy", "x_copy.xmp", "x_copy.pp3", "x_stem"):
            assert state(lib)[str(p[name])] == original[str(p[name])], name
        cli("dupes", "undo", str(new_log(daemon, before)))
        assert state(lib) == original
    finally:
        subprocess.run(["chattr", "-i", str(p["x_copy.pp3"])], check=False)
