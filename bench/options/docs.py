"""docs/run-options.md, made from the declarations: `python -m bench.options > docs/run-options.md`
(tests/test_options.py checks the committed page)."""

from __future__ import annotations

from dataclasses import fields

from bench.options.choices import DEPLOY, EXECUTE, PLAN, STAGES, TRAIN
from bench.options.config import RunConfig
from bench.options.option import field_default, flag

STAGE_HEADINGS = {
    PLAN: "What to train (the run's plan: a resume keeps it)",
    TRAIN: "How each trial trains (recorded with every trial; the axes are lists, one grid point per value; a resume "
    "keeps them)",
    EXECUTE: "Where and how the trials run (a resume may change these)",
    DEPLOY: "What happens to the winners (a resume may change these; `bench export`, `benchmark` and `quantize` take "
    "the options of their group)",
}


def docs_markdown() -> str:
    """docs/run-options.md, made from the declarations (tests/test_options.py checks the committed file)."""
    lines = [
        "# Run options: `bench run`, `--config` files and `bench.RunConfig`",
        "",
        "<!-- Generated from bench/options/ by `python -m bench.options > docs/run-options.md`: edit the "
        "declarations, not this file. -->",
        "",
        "Every option of `bench run` is a field of `bench.RunConfig` with the same name (`--top-k` is `top_k`), a key "
        "a `--config` file may set (TOML: `top_k = 2`; lists as arrays or comma-separated text; `where` as a table, "
        "`where = { kernel_size = [3, 5] }`), and part of what the store records with the run (`bench runs --json`, "
        "the report's parameters). A value is checked the same way wherever it comes from, and a bad one is one line: "
        "`Invalid value for '--lr': -1.0 (a number > 0)`. An axis left unset takes the architecture's default from its "
        "plugin, then cnnbench's (`bench list --json` shows each architecture's `defaults`).",
        "",
        "`bench run --resume RUN` trains the stored plan of RUN: it refuses the options of the first two tables, and "
        "takes those of the others from the command line or, where not given, from what RUN recorded.",
    ]
    for stage in STAGES:
        lines += [
            "",
            f"## {STAGE_HEADINGS[stage]}",
            "",
            "| field | option | default | values | meaning |",
            "| --- | --- | --- | --- | --- |",
        ]
        for f in fields(RunConfig):
            option = f.metadata["option"]
            if option.stage != stage:
                continue
            names = f"`--{flag(f.name)}`" + (f", `{option.short}`" if option.short else "")
            if option.kind is bool and field_default(f) is None:
                names += f", `--no-{flag(f.name)}`"
            default = option.trial_default if option.trial_default is not None else field_default(f)
            shown = "-" if default in (None, [], {}, "") else f"`{_toml(default)}`"
            values = option.requirement() + (", comma-separated" if option.is_list and not option.repeat else "")
            if option.group:
                values += f" ({option.group})"
            meaning = " ".join(x for x in (option.help, option.docs) if x).replace("|", "\\|")
            lines.append(f"| `{f.name}` | {names} | {shown} | {values} | {meaning} |")
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return f"{value:g}" if isinstance(value, float) else str(value)
