"""``python -m smartio`` runs the ``smartio`` command."""

from smartio.cli.main import main

main()
