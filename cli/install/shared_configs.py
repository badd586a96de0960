"""Edits of files findsimilar shares with the user: its action inside Thunar's uca.xml
(spliced in as bytes, so every other byte of the user's file stays) and its line in
darktable's luarc."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from findsimilar.atomic import write_atomic
from findsimilar.cli.install.folders import make_folder
from findsimilar.cli.install.integration_files import (
    LUARC_CREATED,
    LUARC_LINE,
    UCA_CREATED,
    UCA_ID,
    IntegrationError,
    luarc_path,
    render,
    uca_path,
)
from findsimilar.safeio import read_regular

# A file manager's own config file: a few KB; more is not one.
_CONFIG_LIMIT = 16 * 1024 * 1024

__all__ = ["add_luarc_line", "install_thunar", "luarc_lines", "parse_uca", "remove_luarc_line",
           "thunar_state", "uninstall_thunar"]

# --- Thunar: our <action> inside uca.xml ----------------------------------------------

@dataclass
class _Uca:
    """What the splice needs to know about a parsed uca.xml (byte offsets)."""

    root_end: int = -1  # where `</actions>` starts (or `<actions/>` itself)
    ours: list[tuple[int, int]] = field(default_factory=list)  # our <action>...</action>s
    command: str = ""  # our (last) action's <command>


def parse_uca(data: bytes) -> _Uca:
    """Locates our action in uca.xml DATA. Raises ``IntegrationError`` if it is not
    well-formed XML with an <actions> root."""
    parser = expat.ParserCreate()
    found, action_start = _Uca(), 0
    path: list[str] = []
    texts: dict[str, str] = {}

    def start(tag: str, _attrs: dict[str, str]) -> None:
        nonlocal action_start
        if not path and tag != "actions":
            raise IntegrationError(f"the root element is <{tag}>, not <actions>")
        path.append(tag)
        if len(path) == 2 and tag == "action":
            action_start = parser.CurrentByteIndex
            texts.clear()

    def end(tag: str) -> None:
        index = parser.CurrentByteIndex
        if len(path) == 2 and tag == "action" and texts.get("unique-id", "").strip() == UCA_ID:
            found.ours.append((action_start, data.index(b">", index) + 1))
            found.command = texts.get("command", "")
        elif len(path) == 1:
            found.root_end = index
        path.pop()

    def chars(text: str) -> None:
        if len(path) == 3:
            texts[path[2]] = texts.get(path[2], "") + text

    parser.StartElementHandler, parser.EndElementHandler = start, end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise IntegrationError(f"it is not valid XML ({exc})") from None
    return found


def _uca_block(command: list[str]) -> bytes:
    text = render("thunar/findsimilar-action.xml", command)
    start = re.search(r"^<action>", text, re.MULTILINE)
    if start is None:
        raise IntegrationError("the Thunar action template has no <action> line")
    block = text[start.start():].rstrip() + "\n"
    # Character references keep it valid whatever encoding the file declares.
    return block.encode("ascii", "xmlcharrefreplace")


def _read_uca(path: Path) -> bytes | None:
    try:
        return read_regular(path, _CONFIG_LIMIT)  # a FIFO or a device there must not hang us
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IntegrationError(f"cannot read {path}: {exc}") from None


def install_thunar(command: list[str]) -> str:
    path = uca_path()
    data = _read_uca(path)
    block = _uca_block(command)
    if data is None:
        make_folder(path.parent)
        write_atomic(path, UCA_CREATED + block + b"</actions>\n", mode=0o644)
        return f"created {path} with the action"
    try:
        uca = parse_uca(data)
    except IntegrationError as exc:
        raise IntegrationError(f"{path}: {exc}; not changing it") from None
    if uca.ours:
        (start, end), *copies = uca.ours
        new = data[:start] + block.rstrip(b"\n") + _without(data[end:], copies, end)
    elif data[uca.root_end:uca.root_end + 2] == b"</":
        lead = b"" if data[:uca.root_end].endswith(b"\n") else b"\n"
        new = data[:uca.root_end] + lead + block + data[uca.root_end:]
    else:  # <actions/>
        close = data.index(b">", uca.root_end) + 1
        new = data[:uca.root_end] + b"<actions>\n" + block + b"</actions>" + data[close:]
    if new == data:
        return f"the action in {path} is up to date"
    parse_uca(new)  # never write what we could not read back
    backup = path.with_name(path.name + ".findsimilar-backup")
    if not backup.exists() and not data.startswith(UCA_CREATED):
        shutil.copy2(path, backup)  # the user's own file, as it was before we touched it
    write_atomic(path, new, mode=path.stat().st_mode & 0o777)
    kept = f" (your original: {backup})" if backup.exists() else ""
    return f"{'updated' if uca.ours else 'added'} the action in {path}{kept}"


def _without(data: bytes, spans: list[tuple[int, int]], offset: int = 0) -> bytes:
    """DATA without SPANS (byte ranges shifted by OFFSET), each with its whole line when
    nothing else is on it, so no blank line is left behind."""
    for start, end in sorted(spans, reverse=True):
        start, end = start - offset, end - offset
        line_start = data.rfind(b"\n", 0, start) + 1
        if not data[line_start:start].strip() and data[end:end + 1] == b"\n":
            start, end = line_start, end + 1
        data = data[:start] + data[end:]
    return data


def uninstall_thunar() -> str:
    path = uca_path()
    data = _read_uca(path)
    if data is None:
        return f"nothing to remove: no {path}"
    try:
        uca = parse_uca(data)
    except IntegrationError as exc:
        raise IntegrationError(f"{path}: {exc}; not changing it") from None
    if not uca.ours:
        return f"nothing to remove: no findsimilar action in {path}"
    new = _without(data, uca.ours)
    if new == UCA_CREATED + b"</actions>\n":
        path.unlink()
        return f"removed {path} (findsimilar had created it)"
    parse_uca(new)
    write_atomic(path, new, mode=path.stat().st_mode & 0o777)
    return f"removed the action from {path}"


def thunar_state(command: list[str]) -> str:
    data = _read_uca(uca_path())
    if data is None:
        return "missing"
    try:
        uca = parse_uca(data)
    except IntegrationError:
        return "unreadable"
    if not uca.ours:
        return "missing"
    expected = parse_uca(b"<actions>" + _uca_block(command) + b"</actions>").command
    return "installed" if uca.command.strip() == expected.strip() else "outdated"


# --- darktable: the require line in luarc ---------------------------------------------

def luarc_lines() -> list[str]:
    try:
        return luarc_path().read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return []


def add_luarc_line() -> str:
    path, lines = luarc_path(), luarc_lines()
    if any(line.strip() == LUARC_LINE for line in lines):
        return f"{path} already loads the script"
    if not path.exists():
        lines = [LUARC_CREATED]
    elif lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    make_folder(path.parent)
    write_atomic(path, "".join([*lines, LUARC_LINE + "\n"]), mode=0o644)
    return f"added `{LUARC_LINE}` to {path}"


def remove_luarc_line() -> str | None:
    path, lines = luarc_path(), luarc_lines()
    kept = [line for line in lines if line.strip() != LUARC_LINE]
    if kept == lines:
        return None
    if kept in ([], [LUARC_CREATED]):
        path.unlink()
        return f"removed {path} (findsimilar had created it)"
    write_atomic(path, "".join(kept), mode=path.stat().st_mode & 0o777)
    return f"removed `{LUARC_LINE}` from {path}"
