"""`bench list`, `plugins`, `datasets` and `new-plugin`: what the installed plugins offer, and a new plugin's
package."""

from __future__ import annotations

from pathlib import Path

import click

from bench.cli.group import cli, console, print_json
from bench.cli.options import json_option
from bench.core.errors import BenchError
from bench.options.choices import VARIANT_SETS
from bench.options.config import default


@cli.command(name="list")
@click.argument("pattern", default="*")
@click.option("--variants", type=click.Choice(VARIANT_SETS), default=default("variants"), show_default=True)
@click.option(
    "--dataset",
    "-d",
    default=default("dataset"),
    show_default=True,
    help="Parameter counts are for this dataset's image shape and classes.",
)
@json_option
def list_(pattern, variants, dataset, as_json):
    """List architectures (whose name matches PATTERN, or of the plugin PATTERN) with their variants, parameter
    counts and FLOPs per image."""
    from bench.cli.tables import catalog_tables
    from bench.plugins.catalog import catalog
    from bench.plugins.manager import get_plugins

    out = catalog(pattern, variants, dataset)
    broken = get_plugins().info.get(pattern)
    if not out["architectures"] and broken is not None and broken.error:
        raise BenchError(f"plugin '{pattern}' did not load: {broken.error}")  # not "no architecture matches"
    if as_json:
        print_json(out)
        return
    out = console()
    if not out["architectures"]:
        out.print(f"No architecture matches '{pattern}'.")
    for heading, table, note in catalog_tables(out):
        out.print(heading)
        out.print(table)
        out.print(note)


@cli.command()
@json_option
def plugins(as_json):
    """List plugins: version, hooks, what each registered, and errors of broken ones. Every architecture is
    built and run forward once (1x8x8 and 3x32x32) so that a model that cannot run is named here."""
    from bench.plugins.catalog import smoke_check
    from bench.plugins.manager import get_plugins

    loaded = get_plugins()
    smoke_check(loaded)
    infos = [i.as_dict() for i in loaded.info.values()]
    if as_json:
        print_json(infos)
        return
    from bench.cli.tables import plugins_table

    console().print(plugins_table(infos))


@cli.command()
@json_option
def datasets(as_json):
    """List the datasets cnnbench can train on."""
    from bench.cli.tables import datasets_table
    from bench.plugins.manager import get_plugins

    rows = [d.as_dict() for d in get_plugins().datasets.entries.values()]
    if as_json:
        print_json(rows)
        return
    console().print(datasets_table(rows))


@cli.command(name="new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "parent",
    type=click.Path(file_okay=False),
    default=".",
    show_default=True,
    help="Where to create the package folder.",
)
def new_plugin(name, parent):
    """Create a plugin package cnnbench-NAME (module cnnbench_NAME, entry point NAME) with one registered
    architecture and its tests, ready to `pip install -e`."""
    from bench.cli.scaffold import new_plugin as scaffold
    from bench.plugins.manager import get_plugins, get_registry

    folder = scaffold(name, Path(parent), get_registry().names(), get_plugins().info)
    click.echo(f"Created {folder}/ (plugin '{name}', architecture '{name}'). Next:")
    click.echo(f"  pip install -e {folder}")
    click.echo(f"  bench run --plugin {name} --epochs 2")
    click.echo(f"  pip install -e '{folder}[test]' && python -m pytest {folder}/tests")
