"""``python -m perfmodel``: the same command line as ``perfmodel``."""

from cli import main

main()
