"""`python -m tailguard.cli`: the same as the `tailguard` command."""

from tailguard.cli import main

main()
