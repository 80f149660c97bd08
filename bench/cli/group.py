"""The `bench` command group: one line and an exit status for a user's error, never a traceback; SIGTERM stops any
command as Ctrl-C does; and what every command prints with (consoles for tables, JSON)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys

import click
from rich.console import Console

from bench.core.errors import BenchError
from bench.core.version import __version__


class BenchGroup(click.Group):
    """Turns a BenchError into one line on stderr and its exit status: no traceback for user errors."""

    def main(self, args=None, **extra):
        # Keep the command line as typed, to record it with the run.
        args = list(sys.argv[1:] if args is None else args)
        extra.setdefault("obj", {})["argv"] = args
        import warnings

        from bench.core.signals import sigterm_as_interrupt

        warnings.formatwarning = lambda message, *_, **__: f"Warning: {message}\n"  # one line, no source line
        with sigterm_as_interrupt():  # SIGTERM stops any command as Ctrl-C does, in every phase
            return super().main(args=args, **extra)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:  # a path that cannot be used (too long, a symlink loop, read-only...): name it
            from bench.core.files import os_error_line

            click.echo(f"Error: {os_error_line(exc)}", err=True)
            ctx.exit(1)
        except sqlite3.DatabaseError as exc:  # a damaged store: a dropped table, a corrupt page
            from bench.store import default_path

            store = (ctx.obj or {}).get("store") or default_path()
            click.echo(f"Error: the results store {store} cannot be used ({exc}); it may be damaged", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:  # a stop outside a sweep (loading data, planning, exporting): 130, as in one
            click.echo("Interrupted: nothing in progress was recorded as finished.", err=True)
            ctx.exit(130)


def console(stderr: bool = False, quiet: bool = False) -> Console:
    """A console for tables; when output goes to a file or pipe, wide enough not to crush them."""
    out = Console(highlight=False, stderr=stderr, quiet=quiet)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(highlight=False, stderr=stderr, quiet=quiet, width=200)
    return out


def print_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2))


@click.group(cls=BenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="cnnbench")
def cli():
    """cnnbench: train CNN architectures from plugins over a sweep of hyperparameters, keep the
    best-validation checkpoint of every trial, and rank them.

    Start with `bench run --plugin cnn_dropout`, then `bench report`."""
