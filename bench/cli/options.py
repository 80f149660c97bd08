"""The `bench` command's options, made from RunConfig's declarations (bench/options/): one click option per field,
with the field's help, default and check; `--config` files; the options shared by several commands."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import click

from bench.core.errors import UsageError
from bench.options.config import ALIASES, RunConfig, defaults, option_names
from bench.options.option import check_field, flag, invalid


class FieldType(click.ParamType):
    """The command-line text of one RunConfig field, converted and checked by the field's own declaration: a
    number, a word of its choices, or a comma-separated list of them. A bad value raises bench's UsageError, the
    error the Python API raises for it too."""

    def __init__(self, name: str):
        self.field = name
        self.option = next(f.metadata["option"] for f in fields(RunConfig) if f.name == name)
        kind = {int: "INTEGER", float: "FLOAT", bool: "BOOLEAN"}.get(self.option.kind, "TEXT")
        if self.option.choices:
            kind = "|".join(self.option.choices)
        self.name = f"{kind}[,...]" if self.option.many or self.option.axis or self.option.subset else kind

    def convert(self, value, param, ctx):
        option = self.option
        if option.repeat:  # one occurrence of a repeated option (--plugin a --plugin b): one value
            return option.value(self.field, value)
        if isinstance(value, str) and option.is_list:
            value = [item.strip() for item in value.split(",")]
            if not all(value):
                raise invalid(self.field, ",".join(value), why="has an empty item")
        return check_field(self.field, option, value, defaults()[self.field])


def click_option(name: str):
    """The click option of RunConfig field ``name``, from its declaration."""
    option = next(f.metadata["option"] for f in fields(RunConfig) if f.name == name)
    default = defaults()[name]
    names = [f"--{flag(name)}"] + ([option.short] if option.short else [])
    extra: dict = {"help": option.help}
    if option.kind is bool and default is None:
        names = [f"--{flag(name)}/--no-{flag(name)}"] + names[1:]
    elif option.kind is bool:
        extra["is_flag"] = True
    elif option.kind is dict:
        extra.update(multiple=True, metavar=option.metavar)
    else:
        extra["type"] = FieldType(name)
        extra["multiple"] = option.repeat
    # an axis, or an option a plugin may default: what a trial gets when neither the user nor the plugin says
    shown = option.trial_default if option.trial_default is not None else (None if option.kind is bool else default)
    if shown not in (None, [], {}, ""):
        extra["show_default"] = _written(shown)
    extra["default"] = tuple(default) if option.repeat else (None if default == {} else default)
    return click.option(*names, name, **extra)


def _written(value) -> str:
    """A default as `bench run --help` shows it: 1,64; on/off; 0.01."""
    if isinstance(value, list):
        return ",".join(map(str, value))
    return ("on" if value else "off") if isinstance(value, bool) else str(value)


def options_of(*names: str):
    """A decorator adding the click options of these RunConfig fields, in this order."""

    def apply(f):
        for name in reversed(names):
            f = click_option(name)(f)
        return f

    return apply


def _note_store(ctx, param, value):
    """Keep the store's path where an error at the command's boundary can name it."""
    ctx.ensure_object(dict)["store"] = value
    return value


def store_option(f):
    return click.option(
        "--store",
        "store_path",
        type=click.Path(dir_okay=True),
        envvar="BENCH_STORE",
        show_envvar=True,
        callback=_note_store,
        help="Results database (default: runs/bench.db).",
    )(f)


def json_option(f):
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(f)


def parse_where(items: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parts = [v.strip() for v in values.split(",")]
        if not sep or not key.strip() or not all(parts):
            raise invalid("where", item, "PARAM=VALUE[,VALUE...]")
        out.setdefault(key.strip(), []).extend(parts)
    return out


def where_given(ctx, items: tuple[str, ...]) -> dict[str, list[str]]:
    """`bench run`'s variant filter: a config file's ``where`` table with the command line's --where replacing it
    parameter by parameter (``--where widths=64-256-256`` changes one axis of a file that fixes five, rather
    than dropping the other four and planning every variant they had kept out)."""
    where = parse_where(items)
    if ctx.get_parameter_source("where") is click.core.ParameterSource.COMMANDLINE:
        where = {**parse_where(tuple((ctx.default_map or {}).get("where", ()))), **where}
    return where


# `bench run`'s parameters that are not RunConfig fields.
NOT_CONFIG = ("config", "resume_ref", "store_path", "as_json", "quiet", "dry_run", "name")


def load_config(ctx, param, value):
    """--config FILE.toml: the file's keys (RunConfig's fields) become the defaults of `bench run`'s options, so
    options given on the command line override them. Every key is checked as its option, with the file named."""
    import tomllib

    if not value:
        return value
    path = Path(value)
    try:
        table = tomllib.loads(path.read_text())
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", ctx, param) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path} is not valid TOML: {exc}", ctx, param) from None
    params = {p.name: p for p in ctx.command.params if p.name not in NOT_CONFIG}
    config, keys = {}, {}
    for key, raw in table.items():
        name = ALIASES.get(key, key).replace("-", "_")
        if name not in params:
            raise click.UsageError(f"{path}: unknown key '{key}' (known: {', '.join(sorted(params))})", ctx)
        if name in keys:
            raise click.UsageError(f"{path}: keys '{keys[name]}' and '{key}' both set '{name}': keep one", ctx)
        keys[name] = key
        try:
            config[name] = _config_value(raw, params[name], ctx)
        except (click.BadParameter, UsageError) as exc:
            message = exc.message if isinstance(exc, click.BadParameter) else str(exc)
            raise click.UsageError(f"{path}: key '{key}': {message}", ctx) from None
    ctx.default_map = {**(ctx.default_map or {}), **config}
    return value


def _config_value(raw, option, ctx):
    """A TOML value checked and converted as the option would convert it from the command line."""
    if option.name == "where":
        if not isinstance(raw, dict):
            raise click.BadParameter("expected a table, e.g. where = { kernel_size = [3, 5] }")
        from bench.models.registry import format_value

        return tuple(
            f"{k}={','.join(format_value(x) for x in (v if isinstance(v, list) else [v]))}" for k, v in raw.items()
        )
    if option.name == "per_arch":
        if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
            raise click.BadParameter("expected a table per architecture, e.g. [per_arch.fast_cnn] with lr = 0.4")

        def text(v) -> str:
            return str(v).lower() if isinstance(v, bool) else str(v)

        return tuple(
            f"{arch}:{key}={','.join(text(x) for x in (v if isinstance(v, list) else [v]))}"
            for arch, options in raw.items()
            for key, v in options.items()
        )
    if option.multiple:
        items = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(i, str) for i in items):
            raise click.BadParameter(f"expected text or a list of text, not {raw!r}")
        return tuple(items)
    if option.is_flag or option.secondary_opts:
        if not isinstance(raw, bool):
            raise click.BadParameter(f"expected true or false, not {raw!r}")
        return raw
    if isinstance(raw, bool | dict):
        raise click.BadParameter(f"unexpected value {raw!r}")
    if option.type.option.kind in (int, float) and any(
        isinstance(i, str) for i in (raw if isinstance(raw, list) else [raw])
    ):
        kind = "an integer" if option.type.option.kind is int else "a number"
        kind += " (or a list of them)" if option.type.option.is_list else ""
        raise click.BadParameter(f"expected {kind}, not the text {raw!r}: write it without quotes")
    listed = option.type.option.is_list or option.type.option.subset
    if isinstance(raw, list) and not listed:
        raise click.BadParameter(f"takes one value, not a list ({raw!r})")
    if raw == [] and option.type.option.is_list:
        return check_field(option.type.field, option.type.option, [], defaults()[option.type.field])  # none
    text = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
    return option.type.convert(text, option, ctx)


def run_options(f):
    """`bench run`'s options: one per RunConfig field, between the command's own."""
    f = json_option(click.option("--quiet", "-q", is_flag=True, help="No progress display.")(f))
    dry = "Print the plan (trials, parameters, FLOPs, estimated time from this machine's earlier runs) and stop: "
    f = click.option("--dry-run", is_flag=True, help=dry + "nothing is trained or stored.")(f)
    f = store_option(f)
    named = "A name for the run, unique in its store, shown beside its id and usable wherever a run id is."
    f = click.option("--name", metavar="NAME", help=named)(f)
    f = options_of(*option_names())(f)
    resume = "Run what RUN has not finished (pending, running or interrupted trials), in the same run."
    f = click.option("--resume", "resume_ref", metavar="RUN", help=resume)(f)
    config = "A TOML file of these options (e.g. configs/rob313.toml); options given here override it."
    return click.option("--config", type=click.Path(dir_okay=False), is_eager=True, callback=load_config, help=config)(
        f
    )
