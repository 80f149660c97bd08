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
from bench.report.views import TrialView, learned, md_table, time_to, training_seconds, variant_text
from bench.results import diagnosis
from bench.results.leaderboard import configurations, rank, repeated
from bench.store import Store


def leaderboard_rows(
    views: list[TrialView], gpu: bool, target: float | None = None
) -> tuple[list[str], list[list[str]]]:
    batches = sorted({r["batch_size"] for v in views for r in v.latency if r["engine"] == "onnxruntime"})
    large = batches[-1] if batches else 64
    header = [
        "rank",
        "trial",
        "architecture",
        "variant",
        "optimizer",
        "lr",
        "batch",
        "epochs (best/run)",
        "train %",
        "val %",
        "test %",
        "training s",
        f"time to {pct(target)}% val (s)",
        "ONNX test %",
        "params",
        "MFLOPs",
        "ONNX CPU p50 batch 1 (ms)",
        f"ONNX CPU images/s (batch {large})",
    ]
    if gpu:
        header += ["ONNX GPU p50 batch 1 (ms)", f"ONNX GPU images/s (batch {large})"]
    header += ["noisy", "status", "diagnosis"]
    rows = []
    for v in views:
        t, hp = v.trial, v.trial["hparams"]
        row = [
            str(v.test_rank or "-"),
            v.name + (" ★" if t["winner"] else ""),
            t["architecture"],
            variant_text(v),
            hp["optimizer"],
            f"{hp['lr']:g}",
            str(hp["batch_size"]),
            f"{t['best_epoch'] or '-'}/{t['epochs_run'] if t['epochs_run'] is not None else '-'}",
            pct(t["train_acc"]),
            pct(t["val_acc"]),
            pct(t["test_acc"]),
            secs(training_seconds(v.history)),
            _time_text(v.history, target),
            pct(v.export["onnx_test_acc"]) if v.export else "-",
            str(t["params"]) if t["params"] is not None else "-",
            mflops(t["flops"]),
        ]
        noisy = [_noisy_epochs(v)] if v.trial.get("noisy_epochs") else []
        for providers in (CPU_PROVIDERS, GPU_PROVIDERS) if gpu else (CPU_PROVIDERS,):
            b1, big = v.onnx(providers, 1), v.onnx(providers, large)
            row += [num(b1["p50_ms"]) if b1 else "-", f"{big['throughput']:.0f}" if big else "-"]
            noisy += ["latency" if any(m and m.get("noisy") for m in (b1, big)) else ""]
        row += [", ".join(x for x in noisy if x) or "-", v.status, diagnosis.summary(v.findings)]
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
        out.append(md_table(["", ""], rows))
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"Generated {when} by cnnbench {__version__} from `{store.path}`.\n\n" + "\n\n".join(out)


def parameters_section(views: list[TrialView]) -> str:
    """Every parameter of every trial: one table per architecture, since their variant parameters differ."""
    parts = []
    for arch in dict.fromkeys(v.trial["architecture"] for v in views):
        group = [v for v in views if v.trial["architecture"] == arch]
        keys = list(dict.fromkeys(k for v in group for k in v.trial["variant"]))
        hkeys = option_names(TRAIN)
        header = ["trial", *keys, *hkeys]
        rows = [
            [
                v.name,
                *(format_value(v.trial["variant"].get(k, "-")) for k in keys),
                *(str(v.trial["hparams"].get(k, "-")) for k in hkeys),
            ]
            for v in group
        ]
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
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and matrix[i][j] > 0
    ]
    pairs.sort(key=lambda p: (-p[0], -p[1]))
    words = [f"{classes[i]} -> {classes[j]} {pct(share)}% ({n} of {total})" for share, n, total, i, j in pairs[:5]]
    return md_table(["class", "test accuracy %", "test images"], rows), words


def epochs_table(v: TrialView) -> str:
    """Every epoch of a trial: learning rate, losses, accuracies, time; the kept epoch marked."""
    rows = [
        [
            str(h["epoch"]) + (" ★" if h["epoch"] == v.trial["best_epoch"] else ""),
            f"{h['lr']:.4g}" if h.get("lr") is not None else "-",
            num(h["train_loss"]),
            pct(h["train_acc"]),
            num(h["val_loss"]),
            pct(h["val_acc"]),
            secs(h.get("elapsed_s")),
            "noisy" if h.get("noisy") else "-",
        ]
        for h in v.history
    ]
    header = [
        "epoch",
        "lr (first step)",
        "train loss",
        "train %",
        "val loss",
        "val %",
        "training s (cumulative)",
        "time",
    ]
    return md_table(header, rows)


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
    rows = []
    for v in timed:
        hit = time_to(v.history, target) if target is not None else None
        rows.append(
            [
                v.name,
                v.trial["architecture"],
                secs(hit[0]) if hit else "not reached",
                str(hit[1]) if hit else "-",
                secs(training_seconds(v.history)),
                pct(max(h["val_acc"] for h in v.history)),
                _noisy_epochs(v) or "-",
            ]
        )
    table = md_table(
        ["trial", "architecture", f"time to {pct(target)}% val (s)", "epoch", "training s", "best val %", "noisy"],
        rows,
    )
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
        if not repeated(configs):
            continue
        names = {t["idx"]: t["name"] for t in trials}
        for c in configs:
            hp = c["hparams"]
            rows.append(
                [
                    ", ".join(names[i] for i in c["trials"]),
                    c["architecture"],
                    format_variant(c["variant"]) or "-",
                    hp["optimizer"],
                    f"{hp['lr']:g}",
                    str(hp["batch_size"]),
                    str(c["val_acc"]["n"]),
                    _mean_std(c["val_acc"]),
                    _mean_std(c["test_acc"]),
                ]
            )
    if not rows:
        return None
    header = [
        "trials",
        "architecture",
        "variant",
        "optimizer",
        "lr",
        "batch",
        "n",
        "val % (mean ± std)",
        "test % (mean ± std)",
    ]
    return (
        "Trials that differ only by their seed (initialization, order and split) are one configuration: mean and "
        "sample standard deviation over its finished trials, n of them, best mean validation accuracy first.\n\n"
        + md_table(header, rows)
    )


def _mean_std(stats: dict) -> str:
    if stats["mean"] is None:
        return "-"
    return pct(stats["mean"]) + (f" ± {pct(stats['std'])}" if stats["std"] is not None else "")


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


def diagnosis_section(views: list[TrialView]) -> str:
    rows = [
        [v.name, v.trial["architecture"], v.trial["status"], " ".join(f.text for f in v.findings) or "-"] for v in views
    ]
    return md_table(["trial", "architecture", "status", "diagnosis"], rows)
