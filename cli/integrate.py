"""``findsimilar integrate``: file-manager and image-app integrations (being built: issue 5)."""

from __future__ import annotations

import click

__all__ = ["integrate_group"]


@click.group("integrate")
def integrate_group() -> None:
    """Install "Find similar photos" into file managers and image apps (not available yet).

    \b
    Example:
      findsimilar integrate status
    """
