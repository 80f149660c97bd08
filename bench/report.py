"""The lab report, generated from the store: leaderboard, every parameter, loss plots, confusion matrices,
trade-offs, diagnosis and method. Every figure in it is read from the store, never recomputed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import __version__, diagnosis, figures
from bench.architectures import format_value, format_variant
from bench.errors import BenchError
from bench.files import atomic_write
from bench.leaderboard import FINISHED, rank
from bench.store import Store, safe_component
from bench.sweep.config import AXES

CPU = ("CPUExecutionProvider", "cpu")
GPU = ("CUDAExecutionProvider", "cuda")


@dataclass
class TrialView:
    run: dict
    trial: dict
    history: list[dict]
    export: dict | None
    latency: list[dict]
    variants: list[dict] = field(default_factory=list)
    findings: list[diagnosis.Finding] = field(default_factory=list)
    test_rank: int | None = None
    name: str = ""  # t003, or <run>/t003 in a report over several runs

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_")

    def onnx(self, providers: tuple[str, str], batch: int | None = None) -> dict | None:
        """The fp32 ONNX Runtime measurement on ``providers`` at ``batch`` (None: the largest batch measured)."""
        rows = [
            r for r in self.latency
            if r["engine"] == "onnxruntime" and r["provider"] in providers and r["status"] == "ok"
            and (r.get("precision") or "fp32") == "fp32"
        ]  # fmt: skip
        if batch is None:
            return max(rows, key=lambda r: r["batch_size"], default=None)
        return next((r for r in rows if r["batch_size"] == batch), None)

    @property
    def status(self) -> str:
        s = self.trial["status"]
        if self.export and self.export["status"] != "ok":
            s += f", ONNX {self.export['status']}"
        return s


def gather(store: Store, runs: list[dict]) -> list[TrialView]:
    """Every trial of ``runs`` with its history, export and latency, ranked by test accuracy (completed
    trials first; the rest in trial order)."""
    views = []
    for run in runs:
        for t in rank(store.trials(run["id"])):
            name = f"t{t['idx']:03d}" if len(runs) == 1 else f"{run['id']}/t{t['idx']:03d}"
            history = store.history(t["id"])
            views.append(
                TrialView(
                    run,
                    t,
                    history,
                    store.export_of(t["id"]),
                    store.latency_of(t["id"]),
                    store.variants_of(t["id"]),
                    diagnosis.diagnose(t, history),
                    name=name,
                )  # fmt: skip
            )
    ranked = [v for v in views if v.trial["status"] in FINISHED and v.trial["test_acc"] is not None]
    ranked.sort(key=lambda v: (-v.trial["test_acc"], -(v.trial["val_acc"] or 0), v.run["created_at"], v.trial["idx"]))
    for i, v in enumerate(ranked, 1):
        v.test_rank = i
    return ranked + [v for v in views if v.test_rank is None]


# --- formatting ---------------------------------------------------------------------------------------


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def num(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def secs(x) -> str:
    return "-" if x is None else f"{x:.1f}" if x < 100 else f"{x:.0f}"


def mflops(x) -> str:
    return "-" if x is None else f"{x / 1e6:.2f}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(x) -> str:
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def time_to(history: list[dict], target: float) -> tuple[float, int] | None:
    """Cumulative training seconds and epoch at which validation accuracy first reached ``target``."""
    for h in history:
        if h["val_acc"] is not None and h["val_acc"] >= target - 1e-12 and h.get("elapsed_s") is not None:
            return h["elapsed_s"], h["epoch"]
    return None


def training_seconds(history: list[dict]) -> float | None:
    return history[-1].get("elapsed_s") if history else None


def choose_target(views: list[TrialView]) -> float | None:
    """The default time-to-accuracy target: the highest validation accuracy that every completed trial reached,
    floored to a whole percent, so that every one of them has a time."""
    bests = [max(h["val_acc"] for h in v.history) for v in views if v.test_rank is not None and v.history]
    return math.floor(100 * min(bests)) / 100 if bests else None


def variant_text(v: TrialView) -> str:
    return format_variant(v.trial["variant"]) or "-"


def leaderboard_rows(
    views: list[TrialView], gpu: bool, target: float | None = None
) -> tuple[list[str], list[list[str]]]:
    batches = sorted({r["batch_size"] for v in views for r in v.latency if r["engine"] == "onnxruntime"})
    large = batches[-1] if batches else 64
    header = ["rank", "trial", "architecture", "variant", "optimizer", "lr", "batch", "epochs (best/run)",
              "train %", "val %", "test %", "training s", f"time to {pct(target)}% val (s)", "ONNX test %", "params",
              "MFLOPs", "ONNX CPU p50 batch 1 (ms)", f"ONNX CPU images/s (batch {large})"]  # fmt: skip
    if gpu:
        header += ["ONNX GPU p50 batch 1 (ms)", f"ONNX GPU images/s (batch {large})"]
    header += ["status", "diagnosis"]
    rows = []
    for v in views:
        t, hp = v.trial, v.trial["hparams"]
        row = [
            str(v.test_rank or "-"), v.name + (" ★" if t["winner"] else ""), t["architecture"], variant_text(v),
            hp["optimizer"], f"{hp['lr']:g}", str(hp["batch_size"]),
            f"{t['best_epoch'] or '-'}/{t['epochs_run'] if t['epochs_run'] is not None else '-'}",
            pct(t["train_acc"]), pct(t["val_acc"]), pct(t["test_acc"]), secs(training_seconds(v.history)),
            _time_text(v.history, target),
            pct(v.export["onnx_test_acc"]) if v.export else "-",
            str(t["params"]) if t["params"] is not None else "-", mflops(t["flops"]),
        ]  # fmt: skip
        for providers in (CPU, GPU) if gpu else (CPU,):
            b1, big = v.onnx(providers, 1), v.onnx(providers, large)
            row += [num(b1["p50_ms"]) if b1 else "-", f"{big['throughput']:.0f}" if big else "-"]
        row += [v.status, diagnosis.summary(v.findings)]
        rows.append(row)
    return header, rows


def _time_text(history: list[dict], target: float | None) -> str:
    if target is None:
        return "-"
    hit = time_to(history, target)
    return f"{secs(hit[0])} (epoch {hit[1]})" if hit else "not reached"


# --- sections -----------------------------------------------------------------------------------------


def header_section(runs: list[dict], store: Store) -> str:
    out = []
    for run in runs:
        env, split = run["environment"], run["split"]
        shape = "x".join(map(str, run["input_shape"]))
        classes = run["classes"]
        rows = [
            ["run", f"`{run['id']}` ({run['status']})"],
            ["command", f"`{run['command']}`"],
            ["dataset", f"{run['dataset']}: {shape} images, {len(classes)} classes ({', '.join(classes)})"],
            ["split", " / ".join(f"{k} {n}" for k, n in split.items())],
            ["seed", str(run["seed"])],
            ["date (UTC)", f"{run['created_at']} to {run['finished_at'] or '-'}"],
            ["machine", f"{env.get('cpu')}, {env.get('cpu_count')} logical cores; GPU: {env.get('gpu') or 'none'}; "
                        f"training device {env.get('device')}"],
            ["threads", f"torch intra-op threads {env.get('torch_threads')}"],
            ["versions", ", ".join(f"{k} {env.get(k)}" for k in ("cnnbench", "python", "torch", "torchvision",
                                                                 "onnxruntime", "onnx") if env.get(k))],
        ]  # fmt: skip
        out.append(md_table(["", ""], rows))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"Generated {when} by cnnbench {__version__} from `{store.path}`.\n\n" + "\n\n".join(out)


def parameters_section(views: list[TrialView]) -> str:
    """Every parameter of every trial: one table per architecture, since their variant parameters differ."""
    parts = []
    for arch in dict.fromkeys(v.trial["architecture"] for v in views):
        group = [v for v in views if v.trial["architecture"] == arch]
        keys = list(dict.fromkeys(k for v in group for k in v.trial["variant"]))
        hkeys = [*AXES, "select", "patience", "augment", "precision", "channels_last", "compile", "lookahead"]
        header = ["trial", *keys, *hkeys]
        rows = [[v.name, *(format_value(v.trial["variant"].get(k, "-")) for k in keys),
                 *(str(v.trial["hparams"].get(k, "-")) for k in hkeys)] for v in group]  # fmt: skip
        parts.append(f"### {arch}\n\n" + md_table(header, rows))
    return "\n\n".join(parts)


def per_class(v: TrialView) -> tuple[str, list[str]]:
    classes, matrix = v.run["classes"], v.trial["confusion"]
    rows = []
    for i, name in enumerate(classes):
        total = sum(matrix[i])
        rows.append([name, pct(matrix[i][i] / total) if total else "-", str(total)])
    pairs = [
        (matrix[i][j] / sum(matrix[i]), matrix[i][j], sum(matrix[i]), i, j)
        for i in range(len(classes)) for j in range(len(classes))
        if i != j and matrix[i][j] > 0
    ]  # fmt: skip
    pairs.sort(key=lambda p: (-p[0], -p[1]))
    words = [f"{classes[i]} -> {classes[j]} {pct(share)}% ({n} of {total})" for share, n, total, i, j in pairs[:5]]
    return md_table(["class", "test accuracy %", "test images"], rows), words


def epochs_table(v: TrialView) -> str:
    """Every epoch of a trial: learning rate, losses, accuracies, time; the kept epoch marked."""
    rows = [
        [str(h["epoch"]) + (" ★" if h["epoch"] == v.trial["best_epoch"] else ""),
         f"{h['lr']:.4g}" if h.get("lr") is not None else "-", num(h["train_loss"]), pct(h["train_acc"]),
         num(h["val_loss"]), pct(h["val_acc"]), secs(h.get("elapsed_s"))]
        for h in v.history
    ]  # fmt: skip
    header = ["epoch", "lr (first step)", "train loss", "train %", "val loss", "val %", "training s (cumulative)"]
    return md_table(header, rows)


def time_section(views: list[TrialView], target: float | None, chosen: bool, write_png) -> str:
    """Validation accuracy against training time for every trial, and the time each took to reach the target."""
    timed = [v for v in views if v.history and v.history[-1].get("elapsed_s") is not None]
    if not timed:
        return "No trial recorded its training time per epoch (runs made before cnnbench recorded it)."
    series = [(f"{v.name} {v.trial['architecture']}", [h["elapsed_s"] for h in v.history],
               [h["val_acc"] for h in v.history]) for v in timed]  # fmt: skip
    png = write_png("time_to_accuracy.png", figures.accuracy_time_plot(series, target, "Validation accuracy "
                                                                         "against training time"))  # fmt: skip
    how = (
        "the highest validation accuracy every completed trial reached, floored to a whole percent"
        if chosen
        else "given with --target-acc"
    )
    rows = []
    for v in timed:
        hit = time_to(v.history, target) if target is not None else None
        rows.append([v.name, v.trial["architecture"], secs(hit[0]) if hit else "not reached",
                     str(hit[1]) if hit else "-", secs(training_seconds(v.history)),
                     pct(max(h["val_acc"] for h in v.history))])  # fmt: skip
    table = md_table(["trial", "architecture", f"time to {pct(target)}% val (s)", "epoch", "training s",
                      "best val %"], rows)  # fmt: skip
    return (
        f"![Validation accuracy against training time]({png})\n\nTarget: **{pct(target)}%** validation accuracy "
        f"({how}). Time is the cumulative wall time of the training steps up to the end of the first epoch that "
        "reached it (validation passes excluded), as measured on the machine in the header.\n\n" + table
    )


def top_section(views: list[TrialView], top: int, write_png) -> str:
    parts = []
    for v in [v for v in views if v.test_rank is not None][:top]:
        t, hp = v.trial, v.trial["hparams"]
        lines = [
            f"### {v.test_rank}. {v.name}: {t['architecture']} ({variant_text(v)})",
            "",
            f"Test {pct(t['test_acc'])}%, validation {pct(t['val_acc'])}%, training {pct(t['train_acc'])}%; "
            f"best epoch {t['best_epoch']} of {t['epochs_run']}; {hp['optimizer']} lr {hp['lr']:g}, batch "
            f"{hp['batch_size']}.",
            "",
        ]
        title = f"{v.name} {t['architecture']}: loss per epoch"
        png = write_png(f"loss_{v.slug}.png", figures.loss_plot(v.history, t["best_epoch"], title))
        lines.append(f"![Training and validation loss of {v.name}]({png})")
        lines += ["", "**Diagnosis.** " + " ".join(f.text for f in v.findings), "", epochs_table(v), ""]
        if t["confusion"]:
            title = f"{v.name} {t['architecture']}: test confusion matrix (row-normalized)"
            png = write_png(f"confusion_{v.slug}.png", figures.confusion_plot(t["confusion"], v.run["classes"], title))
            table, words = per_class(v)
            lines += [f"![Confusion matrix of {v.name}]({png})", "", table, "",
                      "Largest confusions (true -> predicted, share of the true class): "
                      + ("; ".join(words) if words else "none") + "."]  # fmt: skip
        parts.append("\n".join(lines))
    return "\n\n".join(parts) if parts else "No completed trial."


def tradeoff_section(views: list[TrialView], write_png) -> str:
    parts = []
    done = [v for v in views if v.test_rank is not None]
    timed = [(v, v.onnx(CPU, 1)) for v in done]
    timed = [(v, m) for v, m in timed if m]
    if timed:
        text = _tradeoff(
            write_png, "tradeoff_latency.png", [v for v, _ in timed], [m["p50_ms"] for _, m in timed],
            "ONNX latency", "ONNX Runtime CPU latency, p50 at batch 1 (ms)", "Test accuracy against inference latency",
            "no other benchmarked trial is both faster and more accurate", lambda c: f"{num(c)} ms",
        )  # fmt: skip
        if len(timed) == 1:
            text += " Only one trial is benchmarked: `bench benchmark RUN --top-k N` adds more."
        parts.append(text)
    sized = [v for v in done if v.trial["params"]]
    if sized:
        parts.append(_tradeoff(
            write_png, "tradeoff_params.png", sized, [v.trial["params"] for v in sized], "parameters", "parameters",
            "Test accuracy against model size", "no other trial is both smaller and more accurate",
            lambda c: f"{c} parameters", log_x=True,
        ))  # fmt: skip
    parts.append("### Effect of each swept parameter on validation accuracy\n\n" + effects(done))
    return "\n\n".join(parts)


def _tradeoff(write_png, filename, views, costs, what, xlabel, title, rule, show, log_x=False) -> str:
    """A test-accuracy-against-cost figure and its Pareto front in words."""
    labels = [v.name for v in views]
    accs = [v.trial["test_acc"] for v in views]
    png = write_png(filename, figures.tradeoff_plot(labels, costs, accs, xlabel, title, log_x=log_x))
    front = figures.pareto_front(list(zip(costs, accs, strict=True)))
    return (
        f"### Test accuracy against {what}\n\n![Test accuracy against {what}]({png})\n\nPareto front ({rule}): "
        + "; ".join(f"{labels[i]} ({pct(accs[i])}%, {show(costs[i])})" for i in front)
        + "."
    )


def deployment_section(views: list[TrialView], write_png) -> str:
    """Every benchmarked model x precision on one accuracy-latency front, each variant against its fp32 export,
    and the batch-size curves."""
    from bench import tradeoffs

    parts = []
    points = [p for v in views for p in tradeoffs.accuracy_latency_points(v.name, v.export, v.variants, v.latency)]
    if points:
        labels, costs, accs = (list(x) for x in zip(*points, strict=True))
        png = write_png("deployment_front.png", figures.tradeoff_plot(
            labels, costs, accs, "ONNX Runtime CPU latency, p50 at batch 1 (ms)",
            "Test accuracy (ONNX Runtime) against latency: every model x precision",
            point="model x precision"))  # fmt: skip
        front = figures.pareto_front(list(zip(costs, accs, strict=True)))
        parts.append(
            "### Accuracy against latency, every model x precision\n\n"
            f"![Accuracy against latency, every model x precision]({png})\n\nPareto front (no other model x "
            "precision is both faster and more accurate): "
            + "; ".join(f"{labels[i]} ({pct(accs[i])}%, {num(costs[i])} ms)" for i in front) + "."
        )  # fmt: skip
    rows = []
    ratio = tradeoffs.times
    for v in views:
        for r in tradeoffs.variant_rows(v.export, v.variants, v.latency):
            delta = "-" if r["delta_points"] is None else f"{r['delta_points']:+.2f}"
            largest = f"{ratio(r['speedup_largest'])} (batch {r['largest_batch']})" if r["largest_batch"] else "-"
            rows.append([v.name, v.trial["architecture"], r["precision"], r["status"], pct(r["test_acc"]), delta,
                         pct(r["top1_agreement"]), ratio(r["size_ratio"]), ratio(r["speedup_batch1"]), largest,
                         r["how"]])  # fmt: skip
    if rows:
        parts.append(
            "### Variants against fp32\n\nTest accuracy through onnxruntime (CPU) on the whole test set; Δ in points "
            "against the fp32 export measured the same way; size and speedup (ORT CPU p50) as variant over fp32. "
            "A variant is *flagged* when it loses more than its allowed points, and kept.\n\n"
            + md_table(["trial", "architecture", "precision", "status", "test %", "Δ points", "top-1 agree %",
                        "size ratio", "speedup b1", "speedup largest", "how made"], rows)
        )  # fmt: skip
    curve_series, saturated = [], []
    for v in views:
        by_batch = {(r.get("precision") or "fp32", r["engine"], r["provider"], r["batch_size"]): r for r in v.latency}
        for (precision, engine, provider), pts in tradeoffs.curves(v.latency).items():
            where = "cuda" if provider in GPU else "cpu"
            label = f"{v.name} {precision} {'ORT' if engine == 'onnxruntime' else 'torch'} {where}"
            p50s = [by_batch[(precision, engine, provider, b)]["p50_ms"] for b, _ in pts]
            curve_series.append((label, [b for b, _ in pts], [r for _, r in pts], p50s))
            stop = tradeoffs.saturation(pts)
            saturated.append(f"{label}: " + (f"batch {stop} ({dict(pts)[stop]:,.0f} images/s)" if stop
                                             else f"none up to batch {pts[-1][0]}"))  # fmt: skip
    if curve_series:
        png = write_png("batch_curves.png", figures.batch_curve_plot(curve_series, "Throughput and latency "
                                                                     "against batch size"))  # fmt: skip
        parts.append(
            f"### Batch-size curves\n\n![Throughput and latency against batch size]({png})\n\nSaturation (the "
            f"smallest batch no larger batch beats by more than {100 * (tradeoffs.SATURATION - 1):.0f}% in images/s): "
            + "; ".join(saturated)
            + "."
        )
    if not parts:
        return ("No model is benchmarked: `bench benchmark RUN` times the winners, `bench quantize RUN` adds int8 "
                "and fp16 variants, `--batch-curve` the batch-size curves.")  # fmt: skip
    if not curve_series:
        parts.append("No batch-size curve was measured (`bench benchmark RUN --batch-curve`).")
    return "\n\n".join(parts)


def effects(done: list[TrialView]) -> str:
    axes: dict[str, dict[str, list[TrialView]]] = {}
    for v in done:
        for k in AXES:
            axes.setdefault(k, {}).setdefault(format_value(v.trial["hparams"].get(k)), []).append(v)
        for k, value in v.trial["variant"].items():
            axes.setdefault(f"{v.trial['architecture']}.{k}", {}).setdefault(format_value(value), []).append(v)
    parts = []
    for axis, groups in axes.items():
        if len(groups) < 2:
            continue
        rows = []
        for value, group in groups.items():
            vals = [g.trial["val_acc"] for g in group]
            tests = [g.trial["test_acc"] for g in group]
            rows.append([value, str(len(group)), pct(sum(vals) / len(vals)), pct(max(vals)),
                         pct(sum(tests) / len(tests))])  # fmt: skip
        parts.append(f"**{axis}**\n\n" + md_table(["value", "trials", "mean val %", "best val %", "mean test %"], rows))
    return "\n\n".join(parts) or "Nothing was swept: every completed trial used the same parameters."


def diagnosis_section(views: list[TrialView]) -> str:
    rows = [[v.name, v.trial["architecture"], v.trial["status"], " ".join(f.text for f in v.findings) or "-"]
            for v in views]  # fmt: skip
    return md_table(["trial", "architecture", "status", "diagnosis"], rows)


def method_section(runs: list[dict], views: list[TrialView]) -> str:
    selects = sorted({v.trial["hparams"].get("select", "val_loss") for v in views})
    lines = [
        "- **Training.** One trial is one architecture variant with one set of hyperparameters. Every epoch "
        "records the mean training loss and accuracy (as seen during training, dropout on) and the validation "
        "loss and accuracy (eval mode, no gradients).",
        "- **Best checkpoint.** "
        + " / ".join(
            {
                "val_loss": "the epoch with the lowest validation loss",
                "val_acc": "the epoch with the highest validation accuracy (ties: lower loss)",
            }[s]
            for s in selects
        )
        + "; its weights are restored, and the training, validation and test accuracies in this report are "
        "measured on them (eval mode). Test images are never used for selection; the leaderboard is ranked by "
        "test accuracy as the lab asks, and ★ marks the trial that validation accuracy selects for each "
        "architecture.",
        "- **Divergence.** A trial stops as `diverged` when its training loss is not finite or exceeds 10 x "
        "ln(classes).",
        f"- **Diagnosis.** Overfitting from epoch N: N is the kept epoch, at least {diagnosis.OVERFIT_MIN_EPOCHS} "
        f"epochs follow it, the last validation loss is at least {100 * diagnosis.OVERFIT_RISE:.0f}% above its "
        "minimum and the training loss kept falling. Still improving: the last epoch was the best. Underfitting: "
        f"training accuracy below {100 * diagnosis.UNDERFIT_TRAIN_ACC:.0f}%. Generalization gap: training "
        f"accuracy more than {100 * diagnosis.GAP:.0f} points above validation accuracy.",
        "- **Model size.** Parameters counted from the model; FLOPs per image (forward) by torch's flop "
        "counter (a multiply-add is 2 FLOPs).",
    ]
    exports = [v.export for v in views if v.export]
    if exports:
        e = exports[0]
        lines.append(
            f"- **ONNX.** {e['exporter']}, opset {e['opset']}, dynamic batch axis, checked by "
            "`onnx.checker.check_model(full_check=True)`; compared with PyTorch on up to 512 real test images "
            f"(tolerance {e['tolerance']:g} on the largest logit difference). ONNX test accuracy is computed by "
            "onnxruntime on the CPU over the whole test set."
        )
    methods = [r for v in views for r in v.latency if r["status"] == "ok"]
    if methods:
        from bench.inference import graph_levels

        m = methods[0]["method"]
        ort_providers = sorted({r["provider"] for r in methods if r["engine"] == "onnxruntime"})
        torch_devices = sorted({r["provider"] for r in methods if r["engine"] == "torch"})
        ns = [r["n"] for r in methods]
        lines.append(
            f"- **Latency.** Per call on real test images; session creation and the first run are recorded apart; "
            f"{m['warmup']} warm-up runs, then timed runs until at least {m['min_runs']} runs and "
            f"{m['min_time_s']:g} s ({min(ns)} to {max(ns)} runs here); {m['timer']}; percentiles: "
            f"{m['percentiles']}. ONNX Runtime on {', '.join(ort_providers) or '-'}, PyTorch eager (the baseline) on "
            f"{', '.join(torch_devices) or '-'}, same inputs; intra-op threads {m['intra_op_threads']}"
            + f", inter-op 1, ORT graph optimization {graph_levels([r['method'] for r in methods])}"
            + "; GPU timings use IO binding (no host copies timed). Throughput = batch size / mean latency."
        )
    made = [x for v in views for x in v.variants if x["method"]]
    if made:
        from bench.tradeoffs import how_made

        kinds = "; ".join(sorted({f"{x['precision']}: {how_made({**x, 'note': None}).split(';')[0]}" for x in made}))
        tools = ", ".join(sorted({x["method"]["tool"] for x in made}))
        drops = ", ".join(f"{d:g}" for d in sorted({x["max_accuracy_drop"] for x in made}))
        lines.append(
            f"- **Precisions.** Variants made from the verified fp32 ONNX file with {tools}: {kinds}. int8 is "
            "static (QDQ, per-channel int8 weights, int8 activations calibrated on the trial's own training images) "
            "unless that is impossible, then dynamic, with the reason in its note. Each is checked like the export: "
            "test accuracy through onnxruntime (CPU) on the whole test set, top-1 agreement with fp32, file size; "
            f"flagged (and kept) past {drops} points of accuracy lost; benchmarked like fp32 (ONNX Runtime only)."
        )
    unavailable = {r["provider"]: r["note"] for v in views for r in v.latency if r["status"] == "unavailable"}
    lines += [f"- **{p} unavailable:** {note}" for p, note in unavailable.items()]
    return "\n".join(lines)


# --- the report ---------------------------------------------------------------------------------------


def output_dir(out_root: Path, runs: list[dict]) -> Path:
    if len(runs) == 1:
        return Path(out_root) / safe_component(runs[0]["id"])
    digest = hashlib.sha1(",".join(r["id"] for r in runs).encode()).hexdigest()[:8]
    return Path(out_root) / f"combined-{digest}"


def write_report(store: Store, runs: list[dict], out_root: Path, top: int = 3,
                 target_acc: float | None = None) -> tuple[Path, list[TrialView]]:  # fmt: skip
    """Write report.md and its PNG figures under ``out_root``/<run>/; return the report's path. ``target_acc``
    (a fraction) is the validation accuracy that time to accuracy is measured to (default: choose_target)."""
    views = gather(store, runs)
    target = target_acc if target_acc is not None else choose_target(views)
    folder = output_dir(out_root, runs)
    written: list[str] = []

    def write_png(name: str, data: bytes) -> str:
        atomic_write(folder / name, data)
        written.append(name)
        return name

    gpu = any(r["provider"] in GPU and r["status"] == "ok" for v in views for r in v.latency)
    header, rows = leaderboard_rows(views, gpu, target)
    title = runs[0]["id"] if len(runs) == 1 else f"{len(runs)} runs"
    markdown = "\n\n".join([
        f"# cnnbench report: {title}",
        header_section(runs, store),
        "## Leaderboard",
        "Ranked by test accuracy; trials that did not complete follow. ★: selected by validation accuracy for its "
        "architecture. Accuracies in %; training s: the training steps' wall time (validation excluded); time to "
        f"{pct(target)}% val: see Time to accuracy; latency and throughput from ONNX Runtime (see Method).",
        md_table(header, rows),
        "## Every parameter",
        parameters_section(views),
        f"## Top {top}",
        top_section(views, top, write_png),
        "## Time to accuracy",
        time_section(views, target, target_acc is None, write_png),
        "## Trade-offs",
        tradeoff_section(views, write_png),
        "## Deployment: precisions and batch sizes",
        deployment_section(views, write_png),
        "## Diagnosis of every trial",
        diagnosis_section(views),
        "## Method",
        method_section(runs, views),
    ]) + "\n"  # fmt: skip
    path = folder / "report.md"
    atomic_write(path, markdown.encode())
    return path, views


def to_csv(views: list[TrialView]) -> str:
    buf = io.StringIO()
    fields = ["run", "trial", "test_rank", "val_rank", "winner", "architecture", "plugin", "variant", *AXES, "select",
              "status", "note", "epochs_run", "best_epoch", "train_acc", "val_acc", "test_acc", "onnx_status",
              "onnx_test_acc", "params", "flops", "onnx_cpu_p50_batch1_ms", "onnx_cpu_throughput_largest_batch",
              "diagnosis"]  # fmt: skip
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for v in views:
        t = v.trial
        b1, big = v.onnx(CPU, 1), v.onnx(CPU)
        writer.writerow({
            "run": v.run["id"], "trial": t["idx"], "test_rank": v.test_rank, "val_rank": t["rank"],
            "winner": t["winner"], "architecture": t["architecture"], "plugin": t["plugin"],
            "variant": json.dumps(t["variant"]), **{k: t["hparams"].get(k) for k in (*AXES, "select")},
            "status": t["status"], "note": t["note"], "epochs_run": t["epochs_run"], "best_epoch": t["best_epoch"],
            "train_acc": t["train_acc"], "val_acc": t["val_acc"], "test_acc": t["test_acc"],
            "onnx_status": v.export["status"] if v.export else None,
            "onnx_test_acc": v.export["onnx_test_acc"] if v.export else None,
            "params": t["params"], "flops": t["flops"],
            "onnx_cpu_p50_batch1_ms": b1["p50_ms"] if b1 else None,
            "onnx_cpu_throughput_largest_batch": big["throughput"] if big else None,
            "diagnosis": diagnosis.summary(v.findings),
        })  # fmt: skip
    return buf.getvalue()


MEASUREMENT_FIELDS = (
    "precision",
    "engine",
    "provider",
    "batch_size",
    "status",
    "note",
    "n",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "throughput",
    "session_ms",
    "first_ms",
)


def measurements(views: list[TrialView]) -> list[dict]:
    """One record per stored measurement (trial, precision, engine, provider, batch size), with the model's test
    accuracy at that precision (through onnxruntime; PyTorch's own for the torch engine) and its file size."""
    out = []
    for v in views:
        accs = {x["precision"]: (x["test_acc"], x["size_bytes"], x["status"]) for x in v.variants}
        if v.export:
            accs["fp32"] = (v.export["onnx_test_acc"], v.export["size_bytes"], v.export["status"])
        for r in v.latency:
            precision = r.get("precision") or "fp32"
            acc, size, status = accs.get(precision, (None, None, None))
            if r["engine"] == "torch":
                acc, size, status = v.trial["test_acc"], None, v.trial["status"]
            out.append({"run": v.run["id"], "trial": v.trial["idx"], "architecture": v.trial["architecture"],
                        **{k: r.get(k) for k in MEASUREMENT_FIELDS}, "precision": precision, "test_acc": acc,
                        "model_status": status, "size_bytes": size})  # fmt: skip
    return out


def measurements_csv(views: list[TrialView]) -> str:
    rows = measurements(views)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["run", "trial", "architecture", *MEASUREMENT_FIELDS, "test_acc",
                                             "model_status", "size_bytes"])  # fmt: skip
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def select_runs(store: Store, refs: tuple[str, ...], all_runs: bool = False) -> list[dict]:
    """The runs named by ``refs`` ('latest', ids or unique prefixes; the latest run when none), or every run."""
    if all_runs:
        runs = store.runs()
        if not runs:
            raise BenchError(f"store {store.path} has no runs yet (start one with `bench run`)")
        return runs
    found = (store.run(None if ref == "latest" else ref) for ref in refs or ("latest",))
    return list({r["id"]: r for r in found}.values())


def records(store: Store, views: list) -> list[dict]:
    """`bench report --json`: each trial's public record, with its test-accuracy rank and its diagnosis."""
    from bench.records import trial_record

    return [{**trial_record(store, v.run["id"], v.trial), "test_rank": v.test_rank,
             "diagnosis": [f.text for f in v.findings]} for v in views]  # fmt: skip
