"""``python -m perfmodel``: the same command line as ``perfmodel``."""

from perfmodel.cli import main

main()
