"""`python -m agent` runs the `harmonygraph` command."""

from harmonygraph.cli import main

main()
