"""``python -m pathopipe``: the command line."""

from pathopipe.cli import main

main()
