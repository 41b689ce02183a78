"""`python -m agent` runs the `harmonygraph` command."""

from agent.cli import main

main()
