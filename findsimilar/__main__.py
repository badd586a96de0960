"""``python -m findsimilar`` runs the command line."""

from findsimilar.cli.main import main

main()
