"""`--per-arch ARCH:OPTION=V[,V...]` and a `--config` file's `[per_arch.ARCH]` tables: training options of one
architecture, each checked as its option checks it."""

from __future__ import annotations

from bench.core.errors import UsageError
from bench.options.choices import TRAIN
from bench.options.option import Option, check_field, invalid


def check_per_arch(name: str, value, options: dict[str, Option]) -> dict[str, dict]:
    """per_arch: {ARCH: {OPTION: value}} (or the command line's "ARCH:OPTION=V[,V...]" items), every OPTION a
    training option and every value checked as that option checks it. ``options``: every option by name."""
    if isinstance(value, list | tuple):  # the command line's items
        table: dict[str, dict] = {}
        for item in value:
            arch, colon, rest = str(item).partition(":")
            key, equals, values = rest.partition("=")
            if not (colon and equals and arch.strip() and key.strip() and values.strip()):
                raise invalid(name, item, options[name].requirement())
            table.setdefault(arch.strip(), {})[key.strip()] = [v.strip() for v in values.split(",")]
        value = table
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items()):
        raise invalid(name, value, options[name].requirement())
    trainable = [n for n, o in options.items() if o.stage == TRAIN]
    out: dict[str, dict] = {}
    for arch, given_options in value.items():
        out[arch] = {}
        for key, given in given_options.items():
            field_name = key.replace("-", "_")
            if field_name not in trainable:
                raise invalid(name, f"{arch}:{key}", why=f"is not a training option ({', '.join(trainable)})")
            option = options[field_name]
            values = list(given) if isinstance(given, list | tuple) else [given]
            if option.kind is bool:  # true/false as the command line writes them
                values = [{"true": True, "false": False}.get(v.lower(), v) if isinstance(v, str) else v for v in values]
            if option.subset:  # --augment flip,crop: one value written with commas
                values = [",".join(map(str, values))]
            if not option.is_list:
                if len(values) != 1:
                    raise invalid(field_name, ",".join(map(str, values)), why="takes one value")
                values = values[0]
            try:
                out[arch][field_name] = check_field(field_name, option, values, None)
            except UsageError as exc:
                raise UsageError(f"--per-arch {arch}: {exc}") from None
    return out
