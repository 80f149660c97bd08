"""Bad input, damage and running out of room: a one-line error, a non-zero exit, never a traceback, and
nothing already recorded lost."""

import json
import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import cli
from bench.cli.options import FieldType, load_config, parse_where
from bench.core.errors import UsageError
from bench.options.config import RunConfig, defaults
from bench.store import Store

BENCH = str(Path(sys.executable).parent / "bench")
RUN = ["run", "--plugin", "cnn_dropout"]

# Every bad input a user can type: (arguments, exit status, part of the message).
BAD_INPUTS = [
    # unknown names
    (["run", "--plugin", "nope"], 2, "unknown plugin 'nope'"),
    (["run", "--arch", "resnett"], 2, "unknown architecture 'resnett'; did you mean resnet?"),
    ([*RUN, "--dataset", "cifar100"], 2, "unknown dataset 'cifar100'; did you mean cifar10?"),
    ([*RUN, "--dataset", "imagefolder"], 2, "dataset 'imagefolder' needs an argument"),
    ([*RUN, "--dataset", "digits:x"], 2, "dataset 'digits' takes no argument"),
    ([*RUN, "--executor", "slurm"], 2, "Invalid value for '--executor'"),
    ([*RUN, "--scheduler", "hyperband"], 2, "Invalid value for '--scheduler'"),
    ([*RUN, "--search", "bayes"], 2, "Invalid value for '--search'"),
    ([*RUN, "--optimizer", "lion"], 2, "Invalid value for '--optimizer'"),
    ([*RUN, "--precision", "fp8"], 2, "Invalid value for '--precision'"),
    ([*RUN, "--augment", "blur"], 2, "Invalid value for '--augment': 'blur'"),
    ([*RUN, "--where", "kernel=3"], 2, "has no parameter 'kernel'"),
    ([*RUN, "--where", "kernel_size=4"], 2, "'4' is not a value of cnn_dropout.kernel_size"),
    ([*RUN, "--select", "acc"], 2, "Invalid value for '--select'"),
    # invalid numbers
    ([*RUN, "--batch-size", "0"], 2, "Invalid value for '--batch-size'"),
    ([*RUN, "--batch-size", "-3"], 2, "Invalid value for '--batch-size'"),
    ([*RUN, "--batch-size", "2.5"], 2, "Invalid value for '--batch-size'"),
    ([*RUN, "--batch-size", "100000"], 2, "is larger than the 1150 training images"),
    ([*RUN, "--lr", "0"], 2, "Invalid value for '--lr'"),
    ([*RUN, "--lr", "-1e-3"], 2, "Invalid value for '--lr'"),
    ([*RUN, "--lr", "inf"], 2, "Invalid value for '--lr'"),
    ([*RUN, "--lr", "nan"], 2, "Invalid value for '--lr'"),
    ([*RUN, "--epochs", "0"], 2, "Invalid value for '--epochs'"),
    ([*RUN, "--val-ratio", "0"], 2, "Invalid value for '--val-ratio'"),
    ([*RUN, "--val-ratio", "1"], 2, "Invalid value for '--val-ratio'"),
    ([*RUN, "--val-ratio", "1.5"], 2, "Invalid value for '--val-ratio'"),
    ([*RUN, "--val-ratio", "0.0001"], 2, "leaves an empty split"),
    ([*RUN, "--momentum", "1"], 2, "Invalid value for '--momentum'"),
    ([*RUN, "--weight-decay", "-1"], 2, "Invalid value for '--weight-decay'"),
    ([*RUN, "--seed", "-1"], 2, "Invalid value for '--seed'"),
    ([*RUN, "--top-k", "0"], 2, "Invalid value for '--top-k'"),
    ([*RUN, "--patience", "0"], 2, "Invalid value for '--patience'"),
    ([*RUN, "--search", "random"], 2, "--search random needs --trials N"),
    ([*RUN, "--trials", "3"], 2, "--trials needs --search random"),
    ([*RUN, "--search", "random", "--trials", "0"], 2, "Invalid value for '--trials'"),
    ([*RUN, "--cpus-per-trial", "0"], 2, "Invalid value for '--cpus-per-trial'"),
    ([*RUN, "--threads", "0"], 2, "Invalid value for '--threads'"),
    ([*RUN, "--threads", "100000"], 2, "Invalid value for '--threads'"),
    ([*RUN, "--bench-threads", "100000"], 2, "Invalid value for '--bench-threads'"),
    ([*RUN, "--seed", "18446744073709551616"], 2, "Invalid value for '--seed'"),
    ([*RUN, "--min-time", "inf"], 2, "Invalid value for '--min-time'"),
    ([*RUN, "--tolerance", "nan"], 2, "Invalid value for '--tolerance'"),
    ([*RUN, "--std", "0"], 2, "Invalid value for '--std'"),
    ([*RUN, "--image-size", "0"], 2, "Invalid value for '--image-size'"),
    ([*RUN, "--device", "cuda:0"], 2, "CUDA is not available"),
    ([*RUN, "--min-runs", "0"], 2, "Invalid value for '--min-runs'"),
    ([*RUN, "--batch-sizes", "0"], 2, "Invalid value for '--batch-sizes'"),
    ([*RUN, "--providers", "tpu"], 2, "Invalid value for '--providers'"),
    ([*RUN, "--tolerance", "-1"], 2, "Invalid value for '--tolerance'"),
    ([*RUN, "--opset", "3"], 2, "Invalid value for '--opset'"),
    # malformed lists
    ([*RUN, "--lr", "1e-3,,x"], 2, "'1e-3,,x' has an empty item"),
    ([*RUN, "--lr", "1e-3,x"], 2, "Invalid value for '--lr'"),
    ([*RUN, "--lr", ","], 2, "has an empty item"),
    ([*RUN, "--where", "kernel_size"], 2, "Invalid value for '--where'"),
    ([*RUN, "--where", "=3"], 2, "Invalid value for '--where'"),
    ([*RUN, "--where", "kernel_size=3,"], 2, "Invalid value for '--where'"),
    # data
    ([*RUN, "--dataset", "mnist", "--data-dir", "/nonexistent"], 1, "mnist: files not found"),
    ([*RUN, "--dataset", "cifar10", "--data-dir", "/nonexistent"], 1, "cifar10: files not found"),
    ([*RUN, "--dataset", "imagefolder:/nonexistent"], 1, "image folder /nonexistent does not exist"),
    # stores
    (["report", "--store", "/nonexistent/bench.db"], 1, "no store at /nonexistent/bench.db"),
    ([*RUN, "--store", "/proc/cnnbench/bench.db"], 1, "cannot open store /proc/cnnbench/bench.db"),
    # other commands
    (["report", "--top", "-1"], 2, "Invalid value for '--top'"),
    (["report", "--format", "xml"], 2, "Invalid value for '--format'"),
    (["export"], 2, "Missing argument 'RUN'"),
    (["new-plugin", "Bad-Name"], 2, "invalid plugin name"),
    (["list", "--dataset", "nope"], 2, "unknown dataset 'nope'"),
    (["frobnicate"], 2, "No such command 'frobnicate'"),
    # each option of `bench run` and `bench report`
    (
        ["run", "--plugin", "cnn_dropot"],
        2,
        "unknown plugin 'cnn_dropot'; did you mean cnn_dropout? (available: cnn_dropout,",
    ),
    (["run", "--arch", "vgg"], 2, "unknown architecture 'vgg'; did you mean cnn_vgg?"),
    (["run"], 2, "choose what to train: --plugin NAME or --arch PATTERN"),
    (
        ["run", "--plugin", "cnn_dropout", "--dataset", "digitz"],
        2,
        "unknown dataset 'digitz'; did you mean digits?",
    ),
    (["run", "--plugin", "cnn_dropout", "--batch-size", "0"], 2, "Invalid value for '--batch-size'"),
    (["run", "--plugin", "cnn_dropout", "--batch-size", "32,x"], 2, "Invalid value for '--batch-size'"),
    (["run", "--plugin", "cnn_dropout", "--batch-size", "5000"], 2, "'--batch-size': 5000 is larger than"),
    (["run", "--plugin", "cnn_dropout", "--lr", "0"], 2, "Invalid value for '--lr'"),
    (["run", "--plugin", "cnn_dropout", "--lr", "-0.1"], 2, "Invalid value for '--lr'"),
    (
        ["run", "--plugin", "cnn_dropout", "--lr", "1e-3,,x"],
        2,
        "Invalid value for '--lr': '1e-3,,x' has an empty item",
    ),
    (["run", "--plugin", "cnn_dropout", "--lr", "nan"], 2, "Invalid value for '--lr'"),
    (["run", "--plugin", "cnn_dropout", "--epochs", "0"], 2, "Invalid value for '--epochs'"),
    (["run", "--plugin", "cnn_dropout", "--val-ratio", "0"], 2, "Invalid value for '--val-ratio'"),
    (["run", "--plugin", "cnn_dropout", "--val-ratio", "1"], 2, "Invalid value for '--val-ratio'"),
    (
        ["run", "--plugin", "cnn_dropout", "--val-ratio", "0.0001"],
        2,
        "--val-ratio 0.0001 leaves an empty split",
    ),
    (["run", "--plugin", "cnn_dropout", "--optimizer", "rmsprop"], 2, "Invalid value for '--optimizer'"),
    (["run", "--plugin", "cnn_dropout", "--where", "kernel=3"], 2, "has no parameter 'kernel'"),
    (["run", "--plugin", "cnn_dropout", "--where", "kernel_size"], 2, "Invalid value for '--where'"),
    (
        ["run", "--plugin", "cnn_dropout", "--where", "kernel_size=4"],
        2,
        "'4' is not a value of cnn_dropout.kernel_size",
    ),
    (["run", "--plugin", "cnn_dropout", "--device", "tpu"], 2, "Invalid value for '--device': 'tpu'"),
    (["run", "--plugin", "cnn_dropout", "--schedule", "linear"], 2, "Invalid value for '--schedule'"),
    (["run", "--plugin", "cnn_dropout", "--warmup-epochs", "-1"], 2, "Invalid value for '--warmup-epochs'"),
    (
        ["run", "--plugin", "cnn_dropout", "--warmup-epochs", "2", "--epochs", "2"],
        2,
        "Invalid value for '--warmup-epochs': 2.0 (a number >= 0 and below --epochs)",
    ),
    (["run", "--plugin", "cnn_dropout", "--label-smoothing", "1"], 2, "Invalid value for '--label-smoothing'"),
    (
        ["run", "--plugin", "cnn_dropout", "--nesterov", "--optimizer", "sgd", "--momentum", "0"],
        2,
        "Nesterov momentum needs --momentum above 0",
    ),
    # Ray's own options, where the local executor would ignore them
    ([*RUN, "--scheduler", "asha"], 2, "--scheduler is for --executor ray"),
    ([*RUN, "--ray-address", "10.0.0.1:6379"], 2, "--ray-address is for --executor ray"),
    ([*RUN, "--cpus-per-trial", "2"], 2, "--cpus-per-trial is for --executor ray"),
    # paths the operating system refuses, and the wrong kind of path
    ([*RUN, "--dataset", "imagefolder:/etc/passwd"], 1, "image folder /etc/passwd is not a folder"),
    ([*RUN, "--dataset", f"imagefolder:/tmp/{'x' * 300}"], 1, "File name too long"),
    ([*RUN, "--store", "/tmp/cnnbench-test-store/"], 2, "store /tmp/cnnbench-test-store/ names a folder"),
    (["report", "--store", f"/tmp/{'x' * 300}/bench.db"], 1, "File name too long"),
    (["report", "nosuchrun"], 1, "no store at"),
    (["report", "--target-acc", "0"], 2, "Invalid value for '--target-acc'"),
    (["report", "--target-acc", "101"], 2, "Invalid value for '--target-acc'"),
    (["report", "--measurements"], 2, "--measurements goes with --format csv or --json"),
    # deployment variants and batch curves
    ([*RUN, "--quantize", "int4"], 2, "Invalid value for '--quantize'"),
    ([*RUN, "--calibration-images", "0"], 2, "Invalid value for '--calibration-images'"),
    ([*RUN, "--calibration-method", "kl"], 2, "Invalid value for '--calibration-method'"),
    ([*RUN, "--max-accuracy-drop", "-1"], 2, "Invalid value for '--max-accuracy-drop'"),
    ([*RUN, "--max-accuracy-drop", "nan"], 2, "Invalid value for '--max-accuracy-drop'"),
    ([*RUN, "--batch-curve=yes"], 2, "does not take a value"),
    ([*RUN, "--lookahead=yes"], 2, "does not take a value"),
    ([*RUN, "--repeat", "0"], 2, "Invalid value for '--repeat': 0 (an integer >= 1)"),
    (["benchmark", "latest", "--repeat", "x"], 2, "Invalid value for '--repeat': 'x'"),
    (["quantize"], 2, "Missing argument 'RUN'"),
    (["quantize", "latest", "--quantize", "none"], 2, "--quantize none: nothing to make"),
    (["quantize", "latest", "--quantize", "int8,none"], 2, "Invalid value for '--quantize': 'int8,none' (none alone"),
    ([*RUN, "--image-size", "16"], 2, "'digits' does not resize its images (8x8)"),
    ([*RUN, "--image-size", "40000"], 2, "Invalid value for '--image-size': 40000 (an integer from 4 to 2048)"),
    ([*RUN, "--limit-train", "1"], 2, "Invalid value for '--limit-train': 1 (an integer >= 2)"),
    ([*RUN, "--limit-train", "x"], 2, "Invalid value for '--limit-train': 'x'"),
    ([*RUN, "--dry-run", "--lr", "0"], 2, "Invalid value for '--lr'"),
    ([*RUN, "--mean", "0.1,0.2"], 2, "Invalid value for '--mean': '0.1,0.2' (one value for 'digits'"),
    ([*RUN, "--batch-sizes", "300000000"], 2, "Invalid value for '--batch-sizes': 300000000 (a batch of"),
    (["new-plugin", "torchvision"], 2, "a plugin called 'torchvision' is already installed"),
    (["new-plugin", "engines"], 2, "a plugin called 'engines' is already installed"),
    (["quantize", "latest", "--calibration-images", "-5"], 2, "Invalid value for '--calibration-images'"),
    # run names, and images to classify
    ([*RUN, "--name", "12x"], 2, "--name '12x': a run's name starts with a letter"),
    ([*RUN, "--name", "latest"], 2, "('latest' names the latest run)"),
    ([*RUN, "--name", "a b"], 2, "--name 'a b': a run's name starts with a letter"),
    (["run", "--resume", "latest", "--name", "x"], 2, "--name names a new run; a resumed run keeps its own"),
    (["predict"], 2, "Missing argument 'RUN'"),
    (["predict", "latest"], 2, "Missing argument 'IMAGES...'"),
    (["predict", "latest", "x.png", "--store", "/tmp/cnnbench-no-store/bench.db"], 1, "no store at"),
]


@pytest.mark.parametrize(
    ("args", "status", "message"), BAD_INPUTS, ids=[" ".join(map(str, a[1:4])) for a, _, _ in BAD_INPUTS]
)
def test_bad_input_is_one_error_line_and_a_non_zero_exit(invoke, tmp_path, args, status, message):
    if "CUDA is not available" in message and torch.cuda.is_available():
        pytest.skip("this machine has a GPU: --device cuda:0 is valid here")
    if "--store" not in args:
        args = [*args, "--store", str(tmp_path / "bench.db")] if args[0] in ("run", "report") else args
    result = invoke(*args, store=False)
    assert result.exit_code == status, result.output
    assert message in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0]


def test_a_damaged_store_is_named_in_one_line(invoke, tmp_path):
    """A store whose table was dropped (by hand, by a broken tool): one line naming the store, no traceback."""
    store = tmp_path / "bench.db"
    Store(store).close()
    db = sqlite3.connect(store)
    db.execute("DROP TABLE runs")
    db.close()
    for args in (["runs"], ["run", "--plugin", "cnn_baseline", "--epochs", "1"]):
        result = invoke(*args, "--store", store, store=False)
        assert result.exit_code == 1, result.output
        (error,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert str(store) in error and "no such table: runs" in error


def test_an_image_folder_with_symlink_loops_and_dangling_links_is_read_skipping_them(invoke, tmp_path):
    from PIL import Image

    root = tmp_path / "images"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), 60 * i).save(root / cls / f"{i}.png")
    (root / "a" / "gone.png").symlink_to(tmp_path / "nowhere.png")  # dangling
    (root / "a" / "self.png").symlink_to(root / "a" / "self.png")  # a loop
    (root / "b" / "up").symlink_to(root)  # a folder loop
    # read, the dangling link and the looping one skipped and counted (the CLI prints "Warning: ..." on stderr)
    with pytest.warns(UserWarning, match=re.escape(f"image folder {root}: skipped 2 broken link(s)")):
        result = invoke(
            "run",
            "--arch",
            "cnn_baseline",
            "--epochs",
            "1",
            "--batch-size",
            "2",
            "--no-benchmark",
            "-q",
            "--dataset",
            f"imagefolder:{root}",
            "--image-size",
            "8",
        )
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_reading_commands_work_on_a_store_in_a_read_only_place(tmp_path):
    """Issue 14, item 7: `bench runs` and `bench report --json` read a store on a read-only file system (another
    user's results, a mounted archive); they used to fail, blaming a write."""
    import shutil

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs `unshare -m` (a private mount namespace) to make a read-only bind mount")
    src, ro = tmp_path / "src", tmp_path / "ro"
    ro.mkdir()
    with Store(src / "bench.db") as s:
        run_id = s.create_run(
            command="bench run",
            dataset="digits",
            input_shape=[1, 8, 8],
            classes=["0", "1"],
            split={"train": 1, "val": 1, "test": 1},
            seed=0,
            config={},
            environment={},
            trials=[{"idx": 1, "architecture": "a", "plugin": "p", "variant": {}, "hparams": {}}],
        )
        s.release(run_id)
    script = (
        f"mount --bind {src} {ro} && mount -o remount,ro,bind {ro} && touch {ro}/x 2>/dev/null && exit 9; "
        f"{BENCH} runs --json --store {ro}/bench.db && {BENCH} report --json --store {ro}/bench.db"
    )
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    if result.returncode == 9 or "mount:" in result.stderr:
        pytest.skip(f"no read-only bind mount here: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    assert f'"id": "{run_id}"' in result.stdout and '"status": "pending"' in result.stdout


@pytest.mark.slow
def test_a_new_store_opened_by_several_processes_at_once_is_created_once(tmp_path):
    store = tmp_path / "new.db"
    start = time.time() + 4  # every process imported and waiting: they open the store at the same moment
    code = f"import time; from bench.store import Store; time.sleep({start} - time.time()); Store({str(store)!r})"
    processes = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(6)]
    errors = [p.communicate()[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, errors
    with Store(store) as s:
        assert s.runs() == []


def test_files_we_write_get_the_umasks_permissions(tmp_path):
    from bench.core.files import atomic_write

    previous = os.umask(0o022)
    try:
        atomic_write(tmp_path / "report.md", b"# report")
    finally:
        os.umask(previous)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o644  # mkstemp alone gives 0600


# --- parsers, by property -------------------------------------------------------------------------------

FLOAT_LIST = FieldType("lr")  # a list of numbers > 0


@given(st.lists(st.floats(min_value=1e-9, max_value=1e6, allow_nan=False), min_size=1, max_size=6))
def test_a_list_of_positive_numbers_reads_back_in_order_without_repeats(values):
    text = ",".join(repr(v) for v in values)
    assert FLOAT_LIST.convert(text, None, None) == list(dict.fromkeys(values))


@given(st.text(max_size=40))
def test_any_text_for_a_list_option_is_a_list_or_a_usage_error(text):
    try:
        out = FLOAT_LIST.convert(text, None, None)
    except UsageError as exc:
        assert str(exc).startswith("Invalid value for '--lr': ") and "\n" not in str(exc)
        return
    assert out and all(isinstance(v, float) and v > 0 for v in out)


@given(st.lists(st.text(max_size=20), max_size=4))
def test_any_where_filter_is_a_dict_or_a_usage_error(items):
    try:
        out = parse_where(tuple(items))
    except UsageError as exc:
        assert "Invalid value for '--where'" in str(exc)
        return
    assert all(key and values and all(values) for key, values in out.items())


TOML_VALUES = st.one_of(
    st.integers(-5, 100),
    st.floats(-1, 10, allow_nan=False),
    st.booleans(),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-,. ", max_size=12),
    st.lists(st.integers(-2, 64), max_size=3),
)
TOML_KEYS = st.sampled_from(
    [
        "lr",
        "epochs",
        "batch_size",
        "optimizer",
        "plugin",
        "where",
        "seed",
        "val-ratio",
        "patience",
        "no-benchmark",
        "precision",
        "augment",
        "mean",
        "learning_rate",
        "top_k",
        "device",
        "lookahead",
    ]
)


def _toml(value) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(TOML_KEYS, TOML_VALUES, max_size=5))
def test_any_config_file_is_accepted_or_rejected_naming_key_and_file(tmp_path, table):
    path = tmp_path / "sweep.toml"
    path.write_text("".join(f"{key} = {_toml(value)}\n" for key, value in table.items()))
    command = cli.commands["run"]
    ctx = click.Context(command)
    param = next(p for p in command.params if p.name == "config")
    try:
        load_config(ctx, param, str(path))
    except click.UsageError as exc:
        message = exc.format_message()
        assert str(path) in message and ("key '" in message or "unknown key" in message)
        return
    assert set(ctx.default_map) <= {p.name for p in command.params}


WRONG_TOML = [
    ('epochs = "1"', "key 'epochs': expected an integer (or a list of them), not the text '1'"),
    ('lr = "0.001,0.002"', "key 'lr': expected a number (or a list of them), not the text '0.001,0.002'"),
    ('top_k = "1"', "key 'top_k': expected an integer, not the text '1'"),
    ('plugin = "cnn_dropout"\nplugins = ["cnn_vgg"]', "keys 'plugin' and 'plugins' both set 'plugin': keep one"),
    ("top-k = 1\ntop_k = 2", "keys 'top-k' and 'top_k' both set 'top_k'"),
    ('plugin = "cnn_dropout"\n[where]\nkernel_size = 4', "key 'where': '4' is not a value of cnn_dropout.kernel_size"),
]


@pytest.mark.parametrize(("text", "message"), WRONG_TOML, ids=[t.split()[0] for t, _ in WRONG_TOML])
def test_a_config_value_of_the_wrong_type_is_refused_naming_file_and_key(invoke, tmp_path, text, message):
    path = tmp_path / "sweep.toml"
    path.write_text(text + "\n")
    result = invoke("run", "--config", path, "--store", tmp_path / "bench.db", store=False)
    assert result.exit_code == 2 and f"{path}: {message}" in result.output, result.output


def test_variant_values_are_matched_as_written_in_toml_python_or_the_command_line(invoke, tmp_path):
    """`tta = true` (TOML), `where={"feature_maps": [(32, 64)]}` (Python) and `[[32, 64]]` (TOML) name variants."""
    from bench.sweep.plan import plan_run

    assert {s.variant["tta"] for s in plan_run(RunConfig(arch=["fast_cnn"], where={"tta": ["true"]}))} == {True}
    chosen = plan_run(RunConfig(plugin=["cnn_dropout"], where={"feature_maps": [(32, 64)], "kernel_size": [5]}))
    assert chosen and all(s.variant["feature_maps"] == (32, 64) for s in chosen)
    path = tmp_path / "sweep.toml"
    path.write_text('plugin = "cnn_dropout"\n[where]\nfeature_maps = [[32, 64]]\nkernel_size = 5\n')
    command = cli.commands["run"]
    ctx = click.Context(command)
    load_config(ctx, next(p for p in command.params if p.name == "config"), str(path))
    assert parse_where(ctx.default_map["where"]) == {"feature_maps": ["32-64"], "kernel_size": ["5"]}
    result = invoke(
        "run",
        "--plugin",
        "torchvision",
        "--plugin",
        "timm",
        "--where",
        "model=bogus",
        "--store",
        tmp_path / "bench.db",
        store=False,
    )
    assert result.exit_code == 2 and "no selected architecture has model=bogus (tv_resnet18: resnet18;" in result.output
    assert "timm: nearest" in result.output


WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=3), st.floats(-2, 2)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(defaults())), WRONG, min_size=1, max_size=3))
def test_any_run_config_is_built_or_refused_in_one_line_before_anything_is_recorded(tmp_path_factory, options):
    import bench

    try:
        RunConfig(**options)
    except UsageError as exc:
        assert "\n" not in str(exc) and str(exc)
        store = tmp_path_factory.mktemp("refused") / "bench.db"
        with pytest.raises(UsageError):
            bench.run(**options, store_path=store)
        assert not store.exists()  # nothing recorded, so no run left `running`


# --- running out of room ------------------------------------------------------------------------------


# A process under a file size limit must not cache bytecode: CPython renames a short-written .pyc into place, and
# the truncated file breaks every later import of that module.
def _no_bytecode() -> dict:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def _limited(limit_bytes: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return preexec


@pytest.mark.slow
def test_no_room_for_a_checkpoint_stops_the_sweep_cleanly_and_keeps_what_was_recorded(tmp_path, invoke):
    store = tmp_path / "bench.db"
    # The baseline's checkpoint (~80 KB) fits under 1 MB; the VGG's (~4.7 MB) does not.
    result = subprocess.run(
        [
            BENCH,
            "run",
            "--arch",
            "cnn_baseline",
            "--arch",
            "cnn_vgg",
            "--epochs",
            "1",
            "--no-benchmark",
            "--store",
            str(store),
        ],
        capture_output=True,
        text=True,
        preexec_fn=_limited(1 << 20),
        timeout=300,
        env=_no_bytecode(),
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "no room to write" in error and "best.pt" in error and "earlier results are intact" in error
    with Store(store) as s:
        run = s.run()
        trials = {t["architecture"]: t for t in s.trials(run["id"])}
        assert run["status"] == "failed"
        assert trials["cnn_baseline"]["status"] == "completed"
        assert trials["cnn_vgg"]["status"] == "interrupted" and "no room" in trials["cnn_vgg"]["note"]
    assert not list(store.parent.rglob(".best.pt.*.tmp"))  # no half-written file left behind
    result = invoke("run", "--resume", "latest", "--store", store, "--no-benchmark", "-q", store=False)
    assert result.exit_code == 0, result.output  # with room again, the run finishes


@pytest.mark.slow
def test_no_room_in_the_store_says_so(tmp_path):
    """SQLite calls a write past the end of the disk (or of the file size limit) "disk I/O error": say no room."""
    store = tmp_path / "bench.db"
    Store(store).close()
    code = (
        "from bench.store import Store\n"
        f"s = Store({str(store)!r})\n"
        "try:\n"
        "    s.create_run(command='x', dataset='d', input_shape=[1, 8, 8], classes=['a'], split={}, seed=0,\n"
        "                 config={'big': 'x' * 2_000_000}, environment={})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_no_bytecode(),
        preexec_fn=_limited(200_000),
        timeout=120,
    )
    assert result.stdout.startswith(f"DiskFull no room to write store {store}"), result.stdout + result.stderr
    with Store(store) as s:
        assert s.runs() == []  # nothing half-written


@pytest.mark.slow
def test_no_room_for_a_report_keeps_the_previous_report(tmp_path, invoke):
    store = tmp_path / "bench.db"
    assert (
        invoke(
            "run", "--arch", "cnn_baseline", "--epochs", "1", "--no-benchmark", "-q", "--store", store, store=False
        ).exit_code
        == 0
    )
    out = tmp_path / "reports"
    assert invoke("report", "--store", store, "--out", out, store=False).exit_code == 0
    (report,) = out.glob("*/report.md")
    before = report.read_text()
    # 36 KB: room for SQLite's 32 KB shared memory and the loss plot, not for the confusion matrix (~40 KB).
    result = subprocess.run(
        [BENCH, "report", "--store", str(store), "--out", str(out), "--top", "1"],
        capture_output=True,
        text=True,
        preexec_fn=_limited(36 << 10),
        timeout=300,
        env=_no_bytecode(),
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no room to write" in result.stderr
    assert report.read_text() == before


@pytest.mark.slow
def test_no_room_in_the_onnx_phases_is_one_line_naming_the_file_and_no_fallback(tmp_path):
    """A write that finds no room is not an exporter's or a quantizer's failure: no fallback to the other exporter,
    no variant recorded as failed (a resume makes it again), one line naming the file."""
    code = f"""
import resource, signal, numpy as np, torch
from pathlib import Path
from bench.core.errors import DiskFull
from bench.deploy.export import export_model
from bench.deploy.quantize import QuantizeSettings, make_variants

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 2000)).eval()  # 512 KB of weights
images = torch.randn(8, 1, 8, 8)
fp32 = Path({str(tmp_path)!r}) / "model.onnx"
fp32.write_bytes(export_model(model, (1, 8, 8), {{}}, images).data)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
for what, call in (
    ("export", lambda: export_model(model, (1, 8, 8), {{}}, images)),
    ("fp16", lambda: make_variants(
        fp32, images.numpy(), images.numpy(), np.zeros(8), QuantizeSettings(quantize=("fp16",))
    )),
):
    try:
        call()
        print(what, "no error")
    except DiskFull as exc:
        print(what, exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_no_bytecode(), timeout=300
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout + result.stderr
    assert lines[0].startswith("export no room to write") and "dynamo.onnx (File too large)" in lines[0]
    assert lines[1].startswith("fp16 no room to write") and "model.onnx (File too large)" in lines[1]
