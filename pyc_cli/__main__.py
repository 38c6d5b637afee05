"""`python -m pyc_cli ...` runs the `pyc` command line (for environments without the script)."""

from .cli.main import main

main()
