"""Numbers you can trust on a shared machine (issue 26): every latency figure and epoch time knows how noisy it was,
noisy ones are marked everywhere with one warning, stored models are re-measured instead of re-trained, seeds are
summarized, comparisons are matched, and parity is judged relative to the logits' scale."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from bench.core import noise
from bench.store import Store

TINY = [
    "--plugin",
    "tiny",
    "--where",
    "width=8",
    "--epochs",
    "2",
    "--quantize",
    "none",
    "--batch-sizes",
    "1",
    "--min-runs",
    "5",
    "--min-time",
    "0",
    "--warmup",
    "1",
    "--engines",
    "onnxruntime,torch",
    "--exporter",
    "torchscript",  # the figures' noise is the point, not the exporter (tests/test_onnx.py)
    "-q",
]


def _machine(monkeypatch, others: float):
    """What the rest of the machine did during every measurement: ``others`` cores busy (an injected reading of
    /proc/stat; everything downstream of the reading is the real code)."""
    stop = noise.Watch.stop

    def stop_with(self):
        window = stop(self)
        window.others_cpu = others
        window.contention = (others + self.threads) / (os.cpu_count() or 1)
        return window

    monkeypatch.setattr(noise.Watch, "stop", stop_with)


def test_a_figure_is_noisy_when_others_want_the_cpu_or_its_samples_spread():
    assert not noise.Window(contention=1.0).noisy(2.0)
    assert noise.Window(contention=noise.CONTENTION_LIMIT + 0.01).noisy(1.0)
    assert noise.Window(contention=0.5).noisy(noise.SPREAD_LIMIT + 0.01)
    assert not noise.Window().noisy(None)


def test_the_watch_sees_processes_that_keep_the_cores_busy():
    """A real competitor: two processes spinning while this one waits: the window says the cores were taken."""
    cores = os.cpu_count() or 1
    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    competitors = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(cores)]
    try:
        time.sleep(0.3)  # started and spinning
        with noise.Watch(threads=1) as watch:
            time.sleep(0.5)  # 50 of /proc/stat's ticks per core
    finally:
        for p in competitors:
            p.kill()
            p.wait()
    assert watch.window.others_cpu > 0.75 * cores and watch.window.noisy()
    assert watch.window.load_before is not None and watch.window.load_after is not None


def test_noisy_figures_are_marked_in_the_store_the_json_the_report_and_one_warning(
    monkeypatch, invoke, tiny_plugin, store_path, tmp_path
):
    _machine(monkeypatch, others=2.0 * (os.cpu_count() or 1))
    result = invoke("run", *TINY)
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.output.splitlines() if line.startswith("Warning:")]
    assert "noisy" in warning and "bench benchmark" in warning and "--repeat" in warning
    with Store(store_path) as store:
        (trial,) = store.trials(store.run()["id"])
        assert trial["noisy_epochs"] == 2 and all(e["noisy"] for e in store.history(trial["id"]))
        latency = [r for r in store.latency_of(trial["id"]) if r["status"] == "ok"]
        assert latency and all(r["noisy"] and r["others_cpu"] > 1 for r in latency)
    (row,) = invoke.json("report")
    assert row["noisy_epochs"] == 2 and all(m["noisy"] for m in row["latency"] if m["status"] == "ok")
    assert all(m["noisy"] for m in invoke.json("report", "--measurements") if m["status"] == "ok")
    csv = invoke("report", "--format", "csv").output.splitlines()
    assert csv[1].split(",")[csv[0].split(",").index("noisy_epochs")] == "2"
    assert invoke("report", "--out", tmp_path).exit_code == 0
    (report,) = tmp_path.glob("*/report.md")
    text = report.read_text()
    assert "| 2 of 2 epoch times, latency |" in text and "are marked *noisy*" in text
    assert "Here 2 latency figures and 2 epoch times" in text


def test_a_quiet_run_is_not_marked(monkeypatch, invoke, tiny_plugin, store_path):
    _machine(monkeypatch, others=0.0)
    monkeypatch.setattr(noise, "SPREAD_LIMIT", float("inf"))  # sub-millisecond samples beside the other test worker
    result = invoke("run", *TINY)
    assert result.exit_code == 0 and "Warning:" not in result.output
    (row,) = invoke.json("report")
    assert row["noisy_epochs"] == 0 and not any(m["noisy"] for m in row["latency"])


def test_a_ratio_of_timings_is_shown_only_where_neither_figure_is_noisy():
    from rich.console import Console

    from bench.cli.tables import inference_table
    from bench.deploy.steps import DeployResult

    def row(engine, batch, p50, noisy):
        return {
            "engine": engine,
            "provider": "cpu" if engine == "torch" else "CPUExecutionProvider",
            "batch_size": batch,
            "precision": "fp32",
            "status": "ok",
            "p50_ms": p50,
            "p90_ms": p50,
            "p99_ms": p50,
            "n": 10,
            "throughput": batch / p50 * 1000,
            "noisy": noisy,
            "method": None,
            "repeat": 1,
            "session_ms": 1.0,
            "peak_rss_mb": 1.0,
        }

    rows = [
        row("onnxruntime", 1, 0.5, False),
        row("torch", 1, 2.0, False),
        row("onnxruntime", 64, 5.0, False),
        row("torch", 64, 10.0, True),
    ]
    console = Console(width=250, record=True)
    console.print(inference_table([DeployResult({"idx": 1, "architecture": "a"}, None, [], rows, [])], "t"))
    ort = [line for line in console.export_text().splitlines() if "onnxruntime" in line]
    assert ort[0].rstrip(" │").endswith("4.00x") and ort[1].rstrip(" │").endswith("-")
    # the same rule in every table of the report: an engine against PyTorch, a variant against fp32
    from bench.results.deployed import engine_rows, variant_rows

    evaluation = {"engine": "onnxruntime", "precision": "fp32", "status": "ok", "note": None, "test_acc": 0.5}
    (engine,) = engine_rows({"test_acc": 0.5}, rows, [{**evaluation, "top1_agreement": 1.0}])
    assert engine["batch"] == 64 and engine["vs_torch"] is None  # torch at batch 64 is noisy
    int8 = [{**r, "precision": "int8", "p50_ms": r["p50_ms"] / 2, "noisy": r["batch_size"] == 1} for r in rows[::2]]
    variant = {"precision": "int8", "status": "ok", "test_acc": 0.5, "fp32_test_acc": 0.5, "top1_agreement": 1.0}
    (speed,) = variant_rows(None, [{**variant, "size_bytes": None, "method": None, "note": None}], rows + int8)
    assert speed["speedup_batch1"] is None and speed["speedup_largest"] == 2.0


def test_benchmark_repeat_keeps_every_repetition_and_the_report_shows_their_spread(tiny_run, tmp_path):
    invoke = tiny_run
    args = ["--batch-sizes", "1", "--min-runs", "5", "--min-time", "0", "--warmup", "1", "--providers", "cpu"]
    args += ["--engines", "onnxruntime,torch", "--exporter", "torchscript"]  # the repetitions are the point here
    result = invoke("benchmark", "latest", "--repeat", "2", *args)
    assert result.exit_code == 0, result.output
    (record,) = invoke.json("report")
    ort = [m for m in record["latency"] if m["engine"] == "onnxruntime" and m["batch_size"] == 1]
    assert sorted(m["repeat"] for m in ort) == [1, 2]
    # issue 37: each repetition in a fresh worker process, pyperf's way (the tiny model's class is importable there)
    assert [m["method"]["process"] for m in ort] == [
        f"a fresh worker process (spawn), repetition {i} of 2" for i in (1, 2)
    ]
    assert invoke("report", "--out", tmp_path).exit_code == 0
    (report,) = tmp_path.glob("*/report.md")
    text = report.read_text()
    assert "### Repetitions" in text and "measured 2 times" in text and "pyperf's thresholds" in text
    again = invoke("benchmark", "latest", *args)  # a new benchmark replaces the old repetitions
    assert again.exit_code == 0
    assert [m["repeat"] for m in invoke.json("report", "--measurements") if m["engine"] == "torch"] == [1]


def test_seeds_show_each_configuration_once_with_mean_and_std(invoke, store_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # the table on one line per row, wherever the test runs
    result = invoke(
        "run",
        "--plugin",
        "cnn_dropout",
        "--where",
        "kernel_size=3",
        "--where",
        "convs_per_block=1",
        "--seed",
        "0,1,2",
        "--epochs",
        "1",
        "--no-benchmark",
    )
    assert result.exit_code == 0, result.output
    records = invoke.json("report")
    by_variant: dict[str, list[dict]] = {}
    for r in records:
        by_variant.setdefault(json.dumps(r["variant"], sort_keys=True), []).append(r)
    assert len(by_variant) >= 2 and all(len(rs) == 3 for rs in by_variant.values())
    import statistics

    for rs in by_variant.values():
        vals = [r["val_acc"] for r in rs]
        text = f"{100 * statistics.fmean(vals):.2f} ± {100 * statistics.stdev(vals):.2f}"
        assert text in result.output  # the run's table: one row per configuration, mean ± std over 3 seeds
        assert result.output.count(",".join(f"t{r['trial']:03d}" for r in sorted(rs, key=lambda r: r["trial"]))) == 1
        config = rs[0]["configuration"]
        assert config["val_acc_n"] == 3 and config["val_acc_mean"] == pytest.approx(statistics.fmean(vals))
        assert config["val_acc_std"] == pytest.approx(statistics.stdev(vals)) and sorted(config["seeds"]) == [0, 1, 2]


def test_the_effect_of_a_parameter_comes_from_trials_that_differ_in_it_alone(invoke, tiny_plugin, tmp_path):
    result = invoke("run", "--plugin", "tiny", "--lr", "0.003,0.03", "--epochs", "1", "--no-benchmark", "-q")
    assert result.exit_code == 0
    assert invoke("report", "--out", tmp_path).exit_code == 0
    text = next(tmp_path.glob("*/report.md")).read_text()
    effects = text.split("### Effect of each swept parameter", 1)[1].split("\n## ", 1)[0]
    assert "**lr**: 2 matched comparisons" in effects  # width 8 and 16, each at both rates
    assert "**tiny_cnn.width**: 2 matched comparisons" in effects


def test_a_parameter_that_never_changes_alone_is_called_confounded(invoke, tiny_plugin, tmp_path):
    # the two trials differ in the width and the learning rate together
    result = invoke(
        "run",
        "--plugin",
        "tiny",
        "--variants",
        "all",
        "--lr",
        "0.003,0.03",
        "--search",
        "random",
        "--trials",
        "2",
        "--seed",
        "1",
        "--epochs",
        "1",
        "--no-benchmark",
        "-q",
    )
    assert result.exit_code == 0
    (a, b) = invoke.json("report")
    if a["variant"] == b["variant"] or a["hparams"]["lr"] == b["hparams"]["lr"]:
        pytest.skip("this seed drew trials that differ in one parameter")
    assert invoke("report", "--out", tmp_path).exit_code == 0
    text = next(tmp_path.glob("*/report.md")).read_text()
    assert "Confounded (no two trials differ in it alone" in text and "**lr**" in text.split("Confounded", 1)[1]


def test_the_time_to_accuracy_target_leaves_out_trials_at_chance(invoke, tiny_plugin, tmp_path):
    result = invoke(
        "run", "--plugin", "tiny", "--where", "width=16", "--lr", "1e-9,0.03", "--epochs", "3", "--no-benchmark", "-q"
    )
    assert result.exit_code == 0
    assert invoke("report", "--out", tmp_path).exit_code == 0
    text = next(tmp_path.glob("*/report.md")).read_text()
    target = float(re.search(r"Target: \*\*([\d.]+)%\*\*", text).group(1))
    assert target > 19  # 10 classes: chance is 10%, a tenth of the way to perfect 19%
    assert "never got a tenth of the way from chance" in text


def test_parity_is_relative_to_the_logits_scale(digits, tmp_path):
    """A faithful export of a net with large logits passes; an absolute 1e-4 would have refused it."""
    import torch
    from torch import nn

    from bench.data.splits import Normalizer
    from bench.deploy.export import check_parity, to_onnx

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * 64, 10),
        nn.Linear(10, 10),
    ).eval()
    with torch.no_grad():
        net[-1].weight.mul_(3000)  # logits in the thousands: float32 rounding is ~1e-4 of them
    path = tmp_path / "big.onnx"
    path.write_bytes(to_onnx(net, (1, 8, 8), {}, exporter="torchscript")[0].SerializeToString())  # any faithful file
    images = Normalizer(digits)(digits.test.images)
    check = check_parity(net, path, images)
    assert check.ok, check.note
    assert check.max_abs_diff > 1e-4  # what the absolute tolerance refused


@pytest.mark.parametrize(
    ("env", "first", "spin", "source"),
    [
        ({}, "import bench", "1000", "cnnbench's default"),
        ({"GOMP_SPINCOUNT": "300000"}, "import bench", "300000", "set by the user"),
        ({"OMP_WAIT_POLICY": "PASSIVE"}, "import bench", None, "set by the user"),
        ({}, "import torch, bench", None, "torch was imported before cnnbench"),
    ],
)
def test_openmp_threads_spin_briefly_unless_the_user_chose(env, first, spin, source):
    """Issue 26: libgomp's default spin made a sweep beside other torch jobs 8x slower instead of 3x; cnnbench sets a
    short one before torch loads OpenMP, never over the user's choice, and says what held."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    code = (  # what a run records of it (bench.train.device.environment) is bench.core.threads.described()
        f"{first}\nimport os\nfrom bench.core.threads import described\nprint(os.environ.get('GOMP_SPINCOUNT'))\n"
        "print(described()['source'])"
    )
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True)
    printed_spin, printed_source = out.stdout.splitlines()
    assert printed_spin == str(spin) and source in printed_source
