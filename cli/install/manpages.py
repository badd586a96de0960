"""Man pages written from the click commands themselves (``integrate install man``): one
page per command and subcommand (``findsimilar-dupes-list.1``), in roff, with the name,
synopsis, description (the command's help), options and subcommands, so a page never
says other than ``--help``. Stdlib and click only."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import click

from findsimilar import __version__, config
from findsimilar.cli.install.folders import make_folder
from findsimilar.cli.install.installer import (
    MARKER,
    InstalledFile,
    file_state,
    foreign_files,
    write_file,
)
from findsimilar.cli.install.integration_files import IntegrationError

__all__ = ["install_man", "man_dir", "man_states", "pages", "uninstall_man"]

_PROG = "findsimilar"


def man_dir() -> Path:
    """Returns where the pages go: ``$XDG_DATA_HOME/man/man1`` (``~/.local/share/...``),
    which man-db searches when ``~/.local/bin`` is on PATH."""
    return config.data_home() / "man" / "man1"


def pages() -> dict[str, str]:
    """Returns each page's file name (``findsimilar.1``, ``findsimilar-index.1``, ...)
    mapped to its roff text, for every command that is not hidden."""
    from findsimilar.cli.main import cli

    return {f"{'-'.join(words)}.1": _page(ctx, words)
            for ctx, words in _walk(click.Context(cli, info_name=_PROG, **cli.context_settings),
                                    [_PROG])}


def _walk(ctx: click.Context, words: list[str]) -> Iterator[tuple[click.Context, list[str]]]:
    yield ctx, words
    for name, sub in _subcommands(ctx):
        yield from _walk(click.Context(sub, info_name=name, parent=ctx), [*words, name])


def _subcommands(ctx: click.Context) -> list[tuple[str, click.Command]]:
    group = ctx.command
    if not isinstance(group, click.Group):
        return []
    found = [(n, group.get_command(ctx, n)) for n in group.list_commands(ctx)]
    return [(n, c) for n, c in found if c is not None and not c.hidden]


def _page(ctx: click.Context, words: list[str]) -> str:
    command = ctx.command
    title = "-".join(words)
    out = [f'.TH "{title.upper()}" "1" "" "{_PROG} {__version__}" "User Commands"',
           ".nh", ".SH NAME", f"{_text(title)} \\- {_text(command.get_short_help_str(limit=200))}",
           ".SH SYNOPSIS", f".B {_text(' '.join(words))}",
           _text(" ".join(command.collect_usage_pieces(ctx))),
           ".SH DESCRIPTION", *_description(inspect.cleandoc(command.help or ""))]
    options = [rec for p in command.get_params(ctx)
               if isinstance(p, click.Option) and (rec := p.get_help_record(ctx))]
    if options:
        out.append(".SH OPTIONS")
        for opts, help_text in options:
            out += [".TP", _option_names(opts), _text(help_text)]
    subs = _subcommands(ctx)
    if subs:
        out.append(".SH COMMANDS")
        for name, sub in subs:
            out += [".TP", f".B {_text(name)}", _text(sub.get_short_help_str(limit=200)),
                    f"See \\fB{_text(title)}\\-{_text(name)}\\fR(1)."]
    see = ([f"{'-'.join(words[:-1])}(1)"] if len(words) > 1 else []) + [
        f"{title}-{name}(1)" for name, _ in subs]
    if len(words) == 1:
        out += [".SH EXIT STATUS", *_exit_codes()]
    if see:
        out += [".SH SEE ALSO", ", ".join(f"\\fB{_text(s[:-3])}\\fR(1)" for s in see)]
    return "\n".join(out) + "\n"


def _exit_codes() -> list[str]:
    from findsimilar.errors import EXIT_CODES

    return [line for code, meaning in EXIT_CODES.items()
            for line in (".TP", f".B {code}", _text(meaning))]


def _description(help_text: str) -> list[str]:
    """The help as roff: click's ``\\b`` paragraphs (examples) kept as written, the
    others filled."""
    lines: list[str] = []
    for paragraph in re.split(r"\n\s*\n", help_text.strip()):
        rows = paragraph.splitlines()
        if rows and rows[0].strip() == "\b":
            lines += [".PP", ".nf", *(_text(r) for r in rows[1:]), ".fi"]
        elif paragraph.strip():
            lines += [".PP", _text(" ".join(r.strip() for r in rows))]
    return lines


def _option_names(opts: str) -> str:
    """``-k, --top INTEGER`` with the names in bold, the value's name not."""
    *names, last = opts.split(", ")
    name, _, metavar = last.partition(" ")
    bold = ", ".join(f"\\fB{_text(n)}\\fR" for n in [*names, name])
    return f"{bold} {_text(metavar)}".rstrip()


def _text(text: str) -> str:
    """TEXT safe in a roff line: backslashes and hyphens escaped, a leading dot or quote
    (a request) neutralised."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


# --- installing them (integrate install|uninstall|status man) -------------------------

def _files() -> list[InstalledFile]:
    return [InstalledFile(man_dir() / name, text, "integrate install man",
                          "integrate uninstall man", comment='.\\"')
            for name, text in pages().items()]


def _ours_installed() -> list[Path]:
    """Our pages now in the folder (also those of commands since removed)."""
    return [p for p in sorted(man_dir().glob(f"{_PROG}*.1"))
            if file_state(p, None) not in ("missing", "foreign")]


def install_man() -> list[str]:
    """Writes every page; removes pages of ours no command has now. Raises
    ``IntegrationError`` (writing nothing) when a page of that name is not ours."""
    files = _files()
    foreign = foreign_files(files)
    if foreign:
        raise IntegrationError(f"{foreign[0]} exists and was not written by findsimilar (no "
                               f"'{MARKER}' line); leaving it alone")
    make_folder(man_dir())
    for file in files:
        write_file(file)
    wanted = {f.dest for f in files}
    stale = [p for p in _ours_installed() if p not in wanted]
    for path in stale:
        path.unlink()
    return [f"wrote {len(files)} pages in {man_dir()}", *(f"removed {p}" for p in stale)]


def uninstall_man() -> list[str]:
    """Removes every page of ours. Returns what it did."""
    removed = _ours_installed()
    for path in removed:
        path.unlink()
    return [f"removed {len(removed)} pages from {man_dir()}"] if removed else []


def man_states() -> tuple[list[str], list[str]]:
    """Returns (the state of each page this findsimilar writes, and of each stale page of
    ours: "outdated"; their paths)."""
    files = _files()
    states = [file_state(f.dest, f.body) for f in files]
    wanted = {f.dest for f in files}
    stale = [p for p in _ours_installed() if p not in wanted]
    return states + ["outdated"] * len(stale), [str(man_dir())]
