"""The report's sections about training: header, leaderboard, every parameter, the top trials in detail, time to
accuracy, diagnosis."""

from __future__ import annotations

import time

from bench.core.formats import CPU_PROVIDERS, GPU_PROVIDERS, mflops, num, pct
from bench.core.formats import seconds as secs
from bench.core.version import __version__
from bench.models.registry import format_value, format_variant
from bench.options.choices import TRAIN
from bench.options.config import option_names
from bench.report import plots as figures
from bench.report.views import TrialView, learned, time_to, training_seconds, variant_text
from bench.results import diagnosis
from bench.results.columns import Column, markdown
from bench.results.leaderboard import configurations, rank, repeated
from bench.results.significance import test_interval
from bench.results.tables import swept, swept_columns, swept_text
from bench.store import Store


def leaderboard_columns(views: list[TrialView], gpu: bool, target: float | None = None) -> list[Column]:
    """The report's leaderboard (rows: TrialView, ranked by test accuracy): hyperparameters, accuracies, time,
    ONNX figures on the CPU (and GPU where measured), noise, status and diagnosis."""
    batches = sorted({r["batch_size"] for v in views for r in v.latency if r["engine"] == "onnxruntime"})
    large = batches[-1] if batches else 64
    hp = "hparams"
    columns = [
        Column("rank", lambda v: str(v.test_rank or "-")),
        Column("trial", lambda v: v.name + (" ★" if v.trial["winner"] else ""), left=True),
        Column("architecture", lambda v: v.trial["architecture"], left=True),
        Column("variant", variant_text, left=True),
        Column("optimizer", lambda v: v.trial[hp]["optimizer"], left=True),
        Column("lr", lambda v: f"{v.trial[hp]['lr']:g}"),
        Column("batch", lambda v: str(v.trial[hp]["batch_size"])),
        *swept_columns(views, lambda v: v.trial[hp]),
        Column("epochs (best/run)", lambda v: f"{v.trial['best_epoch'] or '-'}/{_or_dash(v.trial['epochs_run'])}"),
        Column("train %", lambda v: pct(v.trial["train_acc"])),
        Column("val %", lambda v: pct(v.trial["val_acc"])),
        Column("test %", lambda v: pct(v.trial["test_acc"])),
        Column("test 95% interval", _interval),
        Column("training s", lambda v: secs(training_seconds(v.history))),
        Column(f"time to {pct(target)}% val (s)", lambda v: _time_text(v.history, target)),
        Column("ONNX test %", lambda v: pct(v.export["onnx_test_acc"]) if v.export else "-"),
        Column("params", lambda v: _or_dash(v.trial["params"])),
        Column("MFLOPs", lambda v: mflops(v.trial["flops"])),
    ]
    for providers, where in ((CPU_PROVIDERS, "CPU"), (GPU_PROVIDERS, "GPU")) if gpu else ((CPU_PROVIDERS, "CPU"),):
        columns += [
            Column(f"ONNX {where} p50 batch 1 (ms)", lambda v, p=providers: _figure(v.onnx(p, 1), "p50_ms", num)),
            Column(
                f"ONNX {where} images/s (batch {large})",
                lambda v, p=providers: _figure(v.onnx(p, large), "throughput", lambda x: f"{x:.0f}"),
            ),
        ]
    providers = (CPU_PROVIDERS, GPU_PROVIDERS) if gpu else (CPU_PROVIDERS,)
    return columns + [
        Column("noisy", lambda v: _noise(v, providers, large), left=True),
        Column("status", lambda v: v.status, left=True),
        Column("diagnosis", lambda v: diagnosis.summary(v.findings), left=True),
    ]


def _interval(v: TrialView) -> str:
    return test_interval(v.trial)


def _or_dash(x) -> str:
    return "-" if x is None else str(x)


def _figure(row: dict | None, key: str, write) -> str:
    return write(row[key]) if row else "-"


def _noise(v: TrialView, providers: tuple, large: int) -> str:
    """What of a trial's figures are noisy: its epoch times, its latency."""
    noisy = [_noisy_epochs(v)] if v.trial.get("noisy_epochs") else []
    for p in providers:
        noisy += ["latency" if any(m and m.get("noisy") for m in (v.onnx(p, 1), v.onnx(p, large))) else ""]
    return ", ".join(x for x in noisy if x) or "-"


def _time_text(history: list[dict], target: float | None) -> str:
    if target is None:
        return "-"
    hit = time_to(history, target)
    return f"{secs(hit[0])} (epoch {hit[1]})" if hit else "not reached"


# --- sections -----------------------------------------------------------------------------------------


KEY_VALUE = (Column("", lambda r: r[0], left=True), Column("", lambda r: r[1], left=True))


def header_section(runs: list[dict], store: Store) -> str:
    out = []
    for run in runs:
        env, split = run["environment"], run["split"]
        shape = "x".join(map(str, run["input_shape"]))
        classes = run["classes"]
        rows = [
            ["run", f"`{run['id']}`" + (f" {run['name']}" if run.get("name") else "") + f" ({run['status']})"],
            ["command", f"`{run['command']}`"],
            ["dataset", f"{run['dataset']}: {shape} images, {len(classes)} classes ({', '.join(classes)})"],
            ["split", " / ".join(f"{k} {n}" for k, n in split.items())],
            ["seed", str(run["seed"])],
            ["date (UTC)", f"{run['created_at']} to {run['finished_at'] or '-'}"],
            [
                "machine",
                f"{env.get('cpu')}, {env.get('cpu_count')} logical cores; GPU: {env.get('gpu') or 'none'}; "
                f"training device {env.get('device')}",
            ],
            ["threads", f"torch intra-op threads {env.get('torch_threads')}"],
            [
                "versions",
                ", ".join(
                    f"{k} {env.get(k)}"
                    for k in ("cnnbench", "python", "torch", "torchvision", "onnxruntime", "onnx")
                    if env.get(k)
                ),
            ],
        ]
        out.append(markdown(KEY_VALUE, rows))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"Generated {when} by cnnbench {__version__} from `{store.path}`.\n\n" + "\n\n".join(out)


def parameters_section(views: list[TrialView]) -> str:
    """Every parameter of every trial: one table per architecture, since their variant parameters differ."""
    parts = []
    for arch in dict.fromkeys(v.trial["architecture"] for v in views):
        group = [v for v in views if v.trial["architecture"] == arch]
        keys = list(dict.fromkeys(k for v in group for k in v.trial["variant"]))
        columns = [
            Column("trial", lambda v: v.name, left=True),
            *(Column(k, lambda v, k=k: format_value(v.trial["variant"].get(k, "-"))) for k in keys),
            *(Column(k, lambda v, k=k: str(v.trial["hparams"].get(k, "-"))) for k in option_names(TRAIN)),
        ]
        parts.append(f"### {arch}\n\n" + markdown(columns, group))
    return "\n\n".join(parts)


def per_class(v: TrialView) -> tuple[str, list[str]]:
    classes, matrix = v.run["classes"], v.trial["confusion"]
    rows = [(name, matrix[i][i], sum(matrix[i])) for i, name in enumerate(classes)]
    pairs = [
        (matrix[i][j] / sum(matrix[i]), matrix[i][j], sum(matrix[i]), i, j)
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and matrix[i][j] > 0
    ]
    pairs.sort(key=lambda p: (-p[0], -p[1]))
    words = [f"{classes[i]} -> {classes[j]} {pct(share)}% ({n} of {total})" for share, n, total, i, j in pairs[:5]]
    return markdown(PER_CLASS, rows), words


PER_CLASS = (  # rows: (class, correct, test images)
    Column("class", lambda r: r[0], left=True),
    Column("test accuracy %", lambda r: pct(r[1] / r[2]) if r[2] else "-"),
    Column("test images", lambda r: str(r[2])),
)


def epochs_table(v: TrialView) -> str:
    """Every epoch of a trial: learning rate, losses, accuracies, time; the kept epoch marked."""
    columns = (
        Column("epoch", lambda h: str(h["epoch"]) + (" ★" if h["epoch"] == v.trial["best_epoch"] else "")),
        Column("lr (first step)", lambda h: f"{h['lr']:.4g}" if h.get("lr") is not None else "-"),
        Column("train loss", lambda h: num(h["train_loss"])),
        Column("train %", lambda h: pct(h["train_acc"])),
        Column("val loss", lambda h: num(h["val_loss"])),
        Column("val %", lambda h: pct(h["val_acc"])),
        Column("training s (cumulative)", lambda h: secs(h.get("elapsed_s"))),
        Column("time", lambda h: "noisy" if h.get("noisy") else "-", left=True),
    )
    return markdown(columns, v.history)


def time_section(views: list[TrialView], target: float | None, chosen: bool, write_png) -> str:
    """Validation accuracy against training time for every trial, and the time each took to reach the target."""
    timed = [v for v in views if v.history and v.history[-1].get("elapsed_s") is not None]
    if not timed:
        return "No trial recorded its training time per epoch (runs made before cnnbench recorded it)."
    series = [
        (f"{v.name} {v.trial['architecture']}", [h["elapsed_s"] for h in v.history], [h["val_acc"] for h in v.history])
        for v in timed
    ]
    png = write_png(
        "time_to_accuracy.png", figures.accuracy_time_plot(series, target, "Validation accuracy against training time")
    )
    unlearned = [v.name for v in views if v.test_rank is not None and not learned(v)]
    how = (
        "the highest validation accuracy every completed trial that learned reached, floored to a whole percent"
        + (
            f"; {', '.join(unlearned)} never got a tenth of the way from chance to perfect and "
            f"{'is' if len(unlearned) == 1 else 'are'} left out"
            if unlearned
            else ""
        )
        if chosen
        else "given with --target-acc"
    )

    def hit(v: TrialView):
        return time_to(v.history, target) if target is not None else None

    columns = (
        Column("trial", lambda v: v.name, left=True),
        Column("architecture", lambda v: v.trial["architecture"], left=True),
        Column(f"time to {pct(target)}% val (s)", lambda v: secs(hit(v)[0]) if hit(v) else "not reached"),
        Column("epoch", lambda v: str(hit(v)[1]) if hit(v) else "-"),
        Column("training s", lambda v: secs(training_seconds(v.history))),
        Column("best val %", lambda v: pct(max(h["val_acc"] for h in v.history))),
        Column("noisy", lambda v: _noisy_epochs(v) or "-", left=True),
    )
    table = markdown(columns, timed)
    return (
        f"![Validation accuracy against training time]({png})\n\nTarget: **{pct(target)}%** validation accuracy "
        f"({how}). Time is the cumulative wall time of the training steps up to the end of the first epoch that "
        "reached it (validation passes excluded), as measured on the machine in the header; *noisy*: epochs "
        "measured while other processes wanted the CPU (see Method).\n\n" + table
    )


def _noisy_epochs(v: TrialView) -> str:
    n = sum(bool(h.get("noisy")) for h in v.history)
    return f"{n} of {len(v.history)} epoch times" if n else ""


def configurations_section(views: list[TrialView]) -> str | None:
    """Trials that differ only by seed, one row per configuration with mean ± std (n); None when no seed repeats."""
    by_run: dict[str, list[dict]] = {}
    for v in views:
        by_run.setdefault(v.run["id"], []).append({**v.trial, "name": v.name})
    rows = []
    for trials in by_run.values():
        configs = configurations(rank(trials))
        if repeated(configs):
            names = {t["idx"]: t["name"] for t in trials}
            rows += [{**c, "names": ", ".join(names[i] for i in c["trials"])} for c in configs]
    if not rows:
        return None
    columns = (
        Column("trials", lambda c: c["names"], left=True),
        Column("architecture", lambda c: c["architecture"], left=True),
        Column("variant", lambda c: format_variant(c["variant"]) or "-", left=True),
        Column("optimizer", lambda c: c["hparams"]["optimizer"], left=True),
        Column("lr", lambda c: f"{c['hparams']['lr']:g}"),
        Column("batch", lambda c: str(c["hparams"]["batch_size"])),
        *swept_columns(rows, lambda c: c["hparams"]),
        Column("n", lambda c: str(c["val_acc"]["n"])),
        Column("val % (mean ± std)", lambda c: mean_std(c["val_acc"])),
        Column("test % (mean ± std)", lambda c: mean_std(c["test_acc"])),
    )
    return (
        "Trials that differ only by their seed (initialization, order and split) are one configuration: mean and "
        "sample standard deviation over its finished trials, n of them, best mean validation accuracy first.\n\n"
        + markdown(columns, rows)
    )


def mean_std(stats: dict) -> str:
    if stats["mean"] is None:
        return "-"
    return pct(stats["mean"]) + (f" ± {pct(stats['std'])}" if stats["std"] is not None else "")


def top_section(views: list[TrialView], top: int, write_png) -> str:
    parts = []
    keys = swept(views, lambda v: v.trial["hparams"])
    for v in [v for v in views if v.test_rank is not None][:top]:
        t, hp = v.trial, v.trial["hparams"]
        swept_here = f", {swept_text(hp, keys)}" if keys else ""
        lines = [
            f"### {v.test_rank}. {v.name}: {t['architecture']} ({variant_text(v)})",
            "",
            f"Test {pct(t['test_acc'])}%, validation {pct(t['val_acc'])}%, training {pct(t['train_acc'])}%; "
            f"best epoch {t['best_epoch']} of {t['epochs_run']}; {hp['optimizer']} lr {hp['lr']:g}, batch "
            f"{hp['batch_size']}{swept_here}.",
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
            lines += [
                f"![Confusion matrix of {v.name}]({png})",
                "",
                table,
                "",
                "Largest confusions (true -> predicted, share of the true class): "
                + ("; ".join(words) if words else "none")
                + ".",
            ]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) if parts else "No completed trial."


DIAGNOSIS = (
    Column("trial", lambda v: v.name, left=True),
    Column("architecture", lambda v: v.trial["architecture"], left=True),
    Column("status", lambda v: v.trial["status"], left=True),
    Column("diagnosis", lambda v: " ".join(f.text for f in v.findings) or "-", left=True),
)


def diagnosis_section(views: list[TrialView]) -> str:
    return markdown(DIAGNOSIS, views)
