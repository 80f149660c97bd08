"""The `bench` command: a thin layer over the Python API, each command printing what the library returns.

group.py     the command group: user errors as one line, consoles, JSON
options.py   the click options, made from RunConfig's declarations; --config files
run.py       bench run
deploy.py    bench export, benchmark, quantize
results.py   bench report, compare, mlflow, runs
plugins.py   bench list, plugins, datasets, new-plugin
progress.py  what `bench run` shows as it goes (a RunListener)
tables.py    the terminal tables
scaffold.py  a new plugin's package (bench new-plugin)"""

from bench.cli import deploy, plugins, results, run  # noqa: F401 (each registers its commands)
from bench.cli.group import cli


def main():
    cli()
