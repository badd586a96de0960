"""A query: the path a search names, checked and read as the engine needs it (errors
in the words the user sees, each naming the file), and what a search answers."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from findsimilar.errors import FileAccessError, MissingFileError, NotRegularFileError
from findsimilar.safeio import FileTooBig, NotRegularFile, file_kind, open_regular, read_fd
from findsimilar.text import printable

if TYPE_CHECKING:
    from findsimilar.daemon.storage.store import Store

__all__ = ["Match", "SearchResult", "indexed_content", "query_source", "query_stat"]


def query_stat(query: str) -> os.stat_result:
    """``stat`` of a query path, which must name a regular file (it follows symlinks)."""
    try:
        st = os.stat(query)
    except FileNotFoundError:
        raise MissingFileError(f"no such file: {query}") from None
    except PermissionError as exc:
        raise FileAccessError(f"cannot access {query}: {exc.strerror}") from None
    except OSError as exc:
        raise MissingFileError(f"cannot access {query}: {exc.strerror}") from None
    except (UnicodeEncodeError, ValueError):  # a lone surrogate or a NUL: no such name
        raise MissingFileError(f"no such file: {printable(query)}") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(f"not a regular file but a {file_kind(st.st_mode)}: {query}")
    return st


def indexed_content(store: Store, path: str, st: os.stat_result | None = None) -> str | None:
    """The content hash of ``path`` if it is indexed and unchanged since (the same inode,
    size, mtime and ctime as its row: it holds what was indexed), else None; ``st``: its
    ``stat``, if taken already."""
    rec = store.file(path)
    if rec is None or rec.status != "ok" or rec.content_hash is None:
        return None
    if st is None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
    same = (rec.size, rec.mtime_ns, rec.inode, rec.ctime_ns) == (
        st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    return rec.content_hash if same else None


def query_source(query: str, limit: int) -> bytes | Path:
    """The query's bytes, or its path if it is too big to hold in memory (decoding
    then reads only what it needs: a 1 TB sparse file costs nothing). Read through
    safeio: a file swapped for a FIFO or a device since the stat is refused."""
    try:
        fd = open_regular(query)
    except NotRegularFile as exc:
        raise NotRegularFileError(f"{exc.strerror}: {query}") from None
    except FileNotFoundError:
        raise MissingFileError(f"no such file: {query}") from None
    except OSError as exc:
        raise FileAccessError(f"cannot read {query}: {exc.strerror}") from None
    try:
        return read_fd(fd, limit, query)
    except FileTooBig:
        return Path(query)
    except OSError as exc:
        raise FileAccessError(f"cannot read {query}: {exc.strerror}") from None
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Match:
    path: str
    score: float
    pair: str | None = None  # the other file of a RAW+JPEG pair (one photo, one result)


@dataclass
class SearchResult:
    query: str
    results: list[Match] = field(default_factory=list)
    # The query was an indexed photo: its vector read from the store, no model call
    # (for the daemon's search latency, ``metrics``; not part of the answer).
    indexed: bool = False
    # Its near tie was put in order by the pixel check (``rerank``): True if that changed
    # the order, False if not, None if there was none to check (for ``metrics``, likewise).
    reranked: bool | None = None

    def as_dict(self) -> dict[str, object]:
        return {"query": self.query,
                "results": [{"path": m.path, "score": round(m.score, 6),
                             **({"pair": m.pair} if m.pair else {})} for m in self.results]}
