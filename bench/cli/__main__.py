"""python -m bench.cli, where the `bench` script is not on PATH."""

from bench.cli import main

main()
