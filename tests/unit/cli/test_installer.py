"""cli/install/installer.py: the one marker scheme of the systemd units and the
integrations (what is ours, edited, outdated), on real files."""

from __future__ import annotations

import stat
from pathlib import Path

from findsimilar.cli.install.installer import (
    MARKER,
    InstalledFile,
    file_state,
    foreign_files,
    write_file,
)
from findsimilar.cli.install.units import render_units, unit_files


def unit(folder: Path, body: str = "[Service]\nExecStart=/bin/true\n") -> InstalledFile:
    return InstalledFile(folder / "deep" / "x.service", body, "service install",
                         "service uninstall")


def test_a_written_file_is_installed_and_its_marker_names_both_commands(tmp_path: Path) -> None:
    file = unit(tmp_path)
    assert file_state(file.dest, file.body) == "missing"
    write_file(file)
    first = file.dest.read_text().splitlines()[0]
    assert first.startswith(f"# {MARKER} (`findsimilar service install`, checksum ")
    assert first.endswith("`findsimilar service uninstall` removes it.")
    assert file.dest.read_text().endswith(file.body)
    assert file_state(file.dest, file.body) == file_state(file.dest, None) == "installed"
    assert stat.S_IMODE(file.dest.stat().st_mode) == 0o644


def test_an_edit_under_the_marker_is_modified_and_a_new_template_outdated(
        tmp_path: Path) -> None:
    file = unit(tmp_path)
    write_file(file)
    assert file_state(file.dest, file.body.replace("true", "false")) == "outdated"
    file.dest.write_text(file.dest.read_text().replace("/bin/true", "/bin/mine"))
    assert file_state(file.dest, file.body) == "modified"


def test_without_the_marker_line_a_file_is_foreign_and_listed_as_in_the_way(
        tmp_path: Path) -> None:
    file = unit(tmp_path)
    write_file(file)
    file.dest.write_text("".join(file.dest.read_text().splitlines(keepends=True)[1:]))
    assert file_state(file.dest, file.body) == "foreign"
    assert foreign_files([file, unit(tmp_path / "other")]) == [file.dest]


def test_a_script_keeps_its_interpreter_line_first_and_lua_gets_its_own_comment(
        tmp_path: Path) -> None:
    script = InstalledFile(tmp_path / "open", "#!/bin/sh\nexec true\n", "integrate install x",
                           "integrate uninstall x", mode=0o755)
    lua = InstalledFile(tmp_path / "x.lua", "print(1)\n", "integrate install darktable",
                        "integrate uninstall darktable", comment="--")
    for file in (script, lua):
        write_file(file)
        assert file_state(file.dest, file.body) == "installed"
    lines = script.dest.read_text().splitlines()
    assert lines[0] == "#!/bin/sh" and lines[1].startswith(f"# {MARKER}")
    assert stat.S_IMODE(script.dest.stat().st_mode) == 0o755
    assert lua.dest.read_text().startswith(f"-- {MARKER} (`findsimilar integrate install")


def test_a_unit_installed_before_the_one_marker_scheme_is_still_ours_and_outdated(
        tmp_path: Path) -> None:
    """The header `service install` wrote until the installers became one."""
    old = tmp_path / "findsimilar.service"
    old.write_text("# Installed by findsimilar (`findsimilar service install`): re-running it "
                   "rewrites this file,\n# `findsimilar service uninstall` removes it. Delete "
                   "this line to keep your edits.\n[Service]\nExecStart=/old/findsimilar\n")
    assert file_state(old, "[Service]\n") == "outdated"
    assert foreign_files(unit_files(folder=tmp_path)) == []


def test_render_units_is_what_install_writes(tmp_path: Path) -> None:
    rendered = render_units(["/opt/find similar/bin/findsimilar"])
    for file in unit_files(["/opt/find similar/bin/findsimilar"], tmp_path):
        write_file(file)
        assert file.dest.read_text() == rendered[file.dest.name]
        assert 'ExecStart="/opt/find similar/bin/findsimilar"' in file.body or (
            "ExecStart" not in file.body)
