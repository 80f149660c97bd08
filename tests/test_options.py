"""One declaration per option (issue 28): every RunConfig field has its CLI option, its docs row and its check, all
made from the field's declaration; and a new option is one field plus its use, as CONTRIBUTING.md shows."""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from torch import nn

from bench.cli import cli
from bench.core.errors import UsageError
from bench.options.choices import TRAIN
from bench.options.config import AXES, RunConfig, option_names
from bench.options.docs import docs_markdown
from bench.options.hparams import HParams
from bench.options.option import flag

ROOT = Path(__file__).resolve().parent.parent
RUN = cli.commands["run"]
FIELDS = [f.name for f in fields(RunConfig)]


def _wrong_type(option):
    """A value of the wrong type for the option."""
    return {int: "many", float: "much", str: 123, bool: "yes", dict: "kernel_size=3"}[option.kind]


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_has_its_option_its_docs_row_and_its_check(name):
    option = next(f.metadata["option"] for f in fields(RunConfig) if f.name == name)
    (param,) = [p for p in RUN.params if p.name == name]
    assert param.help == option.help and f"--{flag(name)}" in param.opts + param.secondary_opts
    assert re.search(rf"^\| `{name}` \| `--{flag(name)}`", docs_markdown(), flags=re.M)
    with pytest.raises(UsageError, match=re.escape(f"Invalid value for '--{flag(name)}': ")) as error:
        RunConfig(**{name: [_wrong_type(option)] if option.is_list else _wrong_type(option)})
    assert "\n" not in str(error.value)
    if option.stage == TRAIN:  # recorded with every trial
        assert name in {f.name for f in fields(HParams)} and name in option_names(TRAIN)


@pytest.mark.parametrize(
    "name",
    [n for n in FIELDS if next(f for f in fields(RunConfig) if f.name == n).metadata["option"].kind in (int, float)],
)
def test_the_command_line_and_the_api_refuse_a_value_with_the_same_line(name, invoke):
    """One check, one spelling: `bench run --x BAD` prints the line `RunConfig(x=BAD)` raises."""
    option = next(f.metadata["option"] for f in fields(RunConfig) if f.name == name)
    bad = -1 if option.low is not None and option.low >= 0 else "many"
    with pytest.raises(UsageError) as error:
        RunConfig(**{name: [bad] if option.is_list else bad})
    result = invoke("run", "--plugin", "cnn_dropout", f"--{flag(name)}", str(bad))
    assert result.exit_code == 2
    expected = str(error.value).replace("-1.0", "-1")  # the CLI keeps the text as typed where it cannot read it
    assert f"Error: {error.value}" in result.output or f"Error: {expected}" in result.output


def test_the_options_page_is_generated_from_the_declarations():
    assert (ROOT / "docs" / "run-options.md").read_text() == docs_markdown(), (
        "docs/run-options.md is stale: python -m bench.options > docs/run-options.md"
    )


def test_the_axes_are_the_train_fields_that_are_lists_in_grid_order():
    assert AXES[:4] == ("optimizer", "lr", "batch_size", "epochs") and set(AXES) <= set(option_names(TRAIN))


def _apply(diff: str, root: Path) -> None:
    """Apply CONTRIBUTING.md's diff: in each file, the hunk's context and removed lines are replaced by its context
    and added lines (line numbers ignored, the old text must be there exactly once)."""
    for section in re.split(r"^--- a/", diff, flags=re.M)[1:]:
        path = root / section.splitlines()[0]
        text = path.read_text()
        for hunk in re.split(r"^@@.*$", section, flags=re.M)[1:]:
            lines = [line for line in hunk.strip("\n").splitlines()]
            old = "\n".join(line[1:] for line in lines if line[:1] in (" ", "-"))
            new = "\n".join(line[1:] for line in lines if line[:1] in (" ", "+"))
            assert text.count(old) == 1, f"{path.name}: the diff's old text is not there once:\n{old}"
            text = text.replace(old, new)
        path.write_text(text)


CHECK_THE_NEW_OPTION = """
from torch import nn
from bench.cli import cli
from bench.core.errors import UsageError
from bench.options.choices import TRAIN
from bench.options.config import RunConfig, option_names
from bench.options.docs import docs_markdown
from bench.options.hparams import HParams
from bench.sweep.plan import plan_run
from bench.train.optim import make_optimizer

assert [p for p in cli.commands["run"].params if p.name == "amsgrad"][0].is_flag  # the CLI option
try:
    RunConfig(amsgrad="yes")
    raise SystemExit("not checked")
except UsageError as exc:
    assert str(exc) == "Invalid value for '--amsgrad': 'yes' (true or false)", exc  # the check
assert "| `amsgrad` | `--amsgrad` |" in docs_markdown()  # the docs row
assert "amsgrad" in option_names(TRAIN)  # the report's parameter table and CSV columns
spec = plan_run(RunConfig(arch=["cnn_baseline"], amsgrad=True))[0]
assert spec.hparams.amsgrad is True and spec.row()["hparams"]["amsgrad"] is True  # every trial records it
assert make_optimizer(nn.Linear(2, 2), HParams(optimizer="adam", amsgrad=True)).defaults["amsgrad"]  # its use
print("ok")
"""


def test_the_contributing_diff_adds_a_working_option(tmp_path):
    """CONTRIBUTING.md's diff, applied to a copy of the package, gives the option everything it needs."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    (diff,) = re.findall(r"```diff\n(.+?)```", text, flags=re.S)
    assert len([line for line in diff.splitlines() if line[:1] == "+" and not line.startswith("+++")]) <= 4
    shutil.copytree(ROOT / "bench", tmp_path / "bench")
    _apply(diff, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", CHECK_THE_NEW_OPTION], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_a_deploy_option_its_settings_class_lacks_is_refused_as_the_class_is_defined():
    """`stage_settings` makes ExportSettings, BenchSettings and QuantizeSettings: a class that lacks an option of its
    group (the CLI would accept it, the store record it, and the stage never see it) cannot even be defined."""
    from bench.options.choices import EXPORT
    from bench.options.config import stage_settings

    with pytest.raises(
        TypeError, match="ExportSettings must have the export options of bench.options: it lacks tolerance"
    ):

        @stage_settings(EXPORT)
        class ExportSettings:
            exporter: str
            opset: int

    @stage_settings(EXPORT)
    class Complete:
        exporter: str
        opset: int
        tolerance: float

    assert Complete().tolerance == RunConfig().tolerance  # the declared default


def test_every_deploy_group_reaches_its_stage_through_its_settings_class():
    from bench.deploy.export import ExportSettings
    from bench.deploy.quantize import QuantizeSettings
    from bench.options.choices import BENCHMARK, DEPLOY, EXPORT, QUANTIZE
    from bench.options.config import settings
    from bench.runtime.protocol import BenchSettings

    config = RunConfig(plugin=["x"], opset=17, min_runs=7, calibration_images=64)
    for cls, group in ((ExportSettings, EXPORT), (BenchSettings, BENCHMARK), (QuantizeSettings, QUANTIZE)):
        made = settings(cls, config)
        assert {f.name for f in fields(cls)} == set(option_names(DEPLOY, group))
        assert all(
            getattr(made, name) == getattr(config, name) or list(getattr(made, name)) == getattr(config, name)
            for name in option_names(DEPLOY, group)
        )


def test_hparams_lacking_a_train_option_is_refused_as_it_is_defined():
    from dataclasses import dataclass

    from bench.options.hparams import _train_options

    @dataclass(frozen=True)
    class Partial:
        optimizer: str = "sgd"

    with pytest.raises(TypeError, match="HParams must have RunConfig's train options in their order.*it lacks lr"):
        _train_options(Partial)


def test_the_ray_only_options_are_those_declared_so_and_the_local_executor_refuses_each():
    from bench.options.config import RAY_ONLY, option_of

    for name in FIELDS:
        assert option_of(name).ray_only == option_of(name).help.startswith("With --executor ray"), name
    for name, default in RAY_ONLY.items():
        value = {None: "x", "fifo": "asha", 1.0: 2.0, 0.0: 1.0}[default]
        with pytest.raises(UsageError, match=f"--{flag(name)} is for --executor ray"):
            RunConfig(**{name: value})
        assert RunConfig(executor="ray", **{name: value})


def test_a_plugin_default_is_checked_as_its_option_and_a_bad_one_is_the_plugin_s_one_line(invoke):
    """A plugin's lr=-1 is its author's error, named as such when it registers: never "Invalid value for '--lr'" at
    plan time, blaming a flag the user never typed."""
    import bench
    from bench.plugins import manager

    class BadDefaults:
        @bench.hookimpl
        def register_architectures(self, register):
            register("bad_lr", lambda shape, classes: nn.Linear(1, 1), variants={}, defaults={"lr": -1})

    class GoodDefaults:
        @bench.hookimpl
        def register_architectures(self, register):
            register("looks_ahead", lambda shape, classes: nn.Linear(1, 1), variants={}, defaults={"lookahead": True})

    manager.register_in_process(BadDefaults(), name="bad_defaults")
    manager.register_in_process(GoodDefaults(), name="good_defaults")
    try:
        info = manager.get_plugins().info
        assert info["bad_defaults"].error.endswith(
            "plugin 'bad_defaults': 'bad_lr' has default lr=-1, which is not a number > 0"
        )
        assert info["good_defaults"].error is None
        from bench.sweep.plan import plan_run

        assert plan_run(RunConfig(arch=["looks_ahead"]))[0].hparams.lookahead is True  # the plugin's default
        assert plan_run(RunConfig(arch=["looks_ahead"], lookahead=False))[0].hparams.lookahead is False  # the user's
        result = invoke("run", "--plugin", "bad_defaults", "--epochs", "1")
        assert result.exit_code == 1 and "'--lr'" not in result.output
        assert result.output.count("\n") == 1 and "plugin 'bad_defaults'" in result.output
    finally:
        manager.unregister_in_process("bad_defaults")
        manager.unregister_in_process("good_defaults")


def test_a_default_is_shown_from_its_declaration_never_written_into_the_help():
    """`bench run --help` shows each default from the declaration (for an axis: what a trial gets): a help that said
    "(default 0.01)" too would be a second definition, free to drift."""
    from bench.options.config import defaults, option_of

    for name in FIELDS:
        option = option_of(name)
        shown = option.trial_default if option.trial_default is not None else defaults()[name]
        if shown not in (None, [], {}, "") and "(default" in option.help:
            raise AssertionError(f"--{flag(name)}: its help restates the default it shows: {option.help}")
    (lr,) = [p for p in RUN.params if p.name == "lr"]
    assert lr.show_default == "0.01"


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.toml")), ids=str)
def test_every_shipped_config_is_accepted_and_plans_its_trials(path):
    """configs/*.toml as `bench run --config` reads them: every key an option, every value valid, the plan made
    (the dataset is not loaded: CIFAR-10 is a download or the JPEG archive)."""
    import click

    from bench.cli.options import load_config, parse_where
    from bench.sweep.plan import plan_run

    command = cli.commands["run"]
    ctx = click.Context(command)
    load_config(ctx, next(p for p in command.params if p.name == "config"), str(path))
    options = {**ctx.default_map, "where": parse_where(ctx.default_map.get("where") or ())}
    assert plan_run(RunConfig(**options))
