"""``findsimilar completion bash|zsh|fish``: the shell's completion script, as click
writes it for this command line (click and stdlib only: a light command)."""

from __future__ import annotations

import click

__all__ = ["SHELLS", "completion_cmd"]

SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS), metavar="SHELL")
def completion_cmd(shell: str) -> None:
    """Print the completion script for SHELL (commands, options and file names).

    \b
    Enable it for every new shell:
      bash: echo 'eval "$(findsimilar completion bash)"' >> ~/.bashrc
      zsh:  echo 'eval "$(findsimilar completion zsh)"' >> ~/.zshrc
      fish: findsimilar completion fish > ~/.config/fish/completions/findsimilar.fish

    \b
    Examples:
      findsimilar completion bash
      eval "$(findsimilar completion zsh)"
    """
    from click.shell_completion import get_completion_class

    from findsimilar.cli.main import COMPLETE_VAR, cli

    complete = get_completion_class(shell)
    assert complete is not None  # every name in SHELLS is one click ships
    click.echo(complete(cli, {}, "findsimilar", COMPLETE_VAR).source())
