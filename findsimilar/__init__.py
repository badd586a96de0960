"""findsimilar: an always-on local service that finds similar and duplicate photos.

This top-level package holds only light, shared code (configuration, errors);
the engine lives in :mod:`findsimilar.daemon` and the command line in
:mod:`findsimilar.cli`. ``from findsimilar import Client`` is the Python API
(:mod:`findsimilar.api`), imported only when asked for, so that the command line,
which imports this package, does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from findsimilar.api import Client

__all__ = ["Client", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Client":
        from findsimilar.api import Client

        return Client
    raise AttributeError(f"module 'findsimilar' has no attribute {name!r}")
