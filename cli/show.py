"""``findsimilar show``: a results page for a photo (being built: issue 5)."""

from __future__ import annotations

import click

__all__ = ["show_cmd"]


@click.command("show")
@click.argument("photos", nargs=-1, required=True, type=click.Path())
def show_cmd(photos: tuple[str, ...]) -> None:
    """Show similar photos on a results page (not available yet).

    \b
    Example:
      findsimilar show photo.jpg
    """
    raise click.UsageError("`findsimilar show` is not available yet")
