"""The terminal tables of the `bench` commands (rich)."""

from __future__ import annotations

from rich.table import Table

from bench.core.formats import count, device_of, duration, pct, times, trial_label
from bench.core.noise import NOISE_METHOD
from bench.core.status import TrialStatus, VariantStatus
from bench.models.registry import format_value, format_variant
from bench.runtime.protocol import graph_levels


def varying(trials: list[dict]) -> dict[str, set[str]]:
    """Per architecture, the variant parameters that differ between its trials."""
    values: dict[str, dict[str, set[str]]] = {}
    for t in trials:
        for k, v in t["variant"].items():
            values.setdefault(t["architecture"], {}).setdefault(k, set()).add(format_value(v))
    return {arch: {k for k, vs in params.items() if len(vs) > 1} for arch, params in values.items()}


def short_variant(trial: dict, keys: set[str]) -> str:
    shown = {k: v for k, v in trial["variant"].items() if k in keys} if keys else trial["variant"]
    return format_variant(shown) or "-"


STATUS_STYLE = {
    TrialStatus.COMPLETED: "green",
    TrialStatus.EARLY_STOPPED: "green",
    TrialStatus.PRUNED: "yellow",
    TrialStatus.DIVERGED: "yellow",
    TrialStatus.FAILED: "red",
    TrialStatus.INTERRUPTED: "magenta",
    TrialStatus.PENDING: "dim",
    TrialStatus.RUNNING: "cyan",
}


def leaderboard_table(ranked: list[dict], title: str) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        caption="★ best validation accuracy of its architecture",
        caption_justify="left",
    )
    for name, justify in [
        ("#", "right"),
        ("trial", "left"),
        ("architecture", "left"),
        ("variant", "left"),
        ("opt", "left"),
        ("lr", "right"),
        ("batch", "right"),
        ("best/epochs", "right"),
        ("val %", "right"),
        ("test %", "right"),
        ("params", "right"),
        ("time", "right"),
        ("status", "left"),
    ]:
        table.add_column(name, justify=justify, no_wrap=name not in ("variant", "status"))
    several = len({t.get("run_id") for t in ranked}) > 1  # trials of several runs: each named with its run
    sets = list(dict.fromkeys(t["test_set"] for t in ranked if t.get("test_set")))
    if len(sets) > 1:  # ranks start again on each test set: say which one each row is ranked on
        table.add_column("test set", no_wrap=False)
        table.caption += "; ranks are per test set, never across them"
    keys = varying(ranked)
    for t in ranked:
        hp = t["hparams"]
        status = t["status"] + (f": {t['note']}" if t.get("note") and t["status"] != TrialStatus.COMPLETED else "")
        table.add_row(
            ("★ " if t["winner"] else "") + (str(t["rank"]) if t["rank"] else "-"),
            trial_label(t["idx"], t.get("run_id") if several else None),
            t["architecture"],
            short_variant(t, keys.get(t["architecture"], set())),
            hp["optimizer"],
            f"{hp['lr']:g}",
            str(hp["batch_size"]),
            f"{t['best_epoch'] or '-'}/{t['epochs_run'] if t['epochs_run'] is not None else '-'}",
            pct(t["val_acc"]),
            pct(t["test_acc"]),
            count(t["params"]),
            duration(t["duration_s"]) + (" [yellow]noisy[/]" if t.get("noisy_epochs") else ""),
            f"[{STATUS_STYLE.get(t['status'], 'white')}]{status}[/]",
            *([t.get("test_set") or "-"] if len(sets) > 1 else []),
        )
    if any(t.get("noisy_epochs") for t in ranked):
        table.caption += f"; time [yellow]noisy[/]: some of its epochs were ({NOISE_METHOD})"
    return table


def _mean_std(stats: dict, scale: float = 100, digits: int = 2) -> str:
    if stats["mean"] is None:
        return "-"
    text = f"{scale * stats['mean']:.{digits}f}"
    return text + (f" ± {scale * stats['std']:.{digits}f}" if stats["std"] is not None else "")


def configurations_table(configs: list[dict], title: str) -> Table:
    """One row per configuration (trials that differ only by seed): mean ± standard deviation over its seeds."""
    table = Table(
        title=title,
        title_justify="left",
        caption_justify="left",
        caption="mean ± sample standard deviation over the finished trials of each configuration (n); "
        "★ holds its architecture's best trial",
    )
    for name in ("#", "trials", "architecture", "variant", "opt", "lr", "batch", "n", "val %", "test %", "time"):
        table.add_column(name, justify="left" if name in ("trials", "architecture", "variant", "opt") else "right")
    keys = varying(configs)
    for c in configs:
        hp = c["hparams"]
        table.add_row(
            ("★ " if c["winner"] else "") + (str(c["rank"]) if c["rank"] else "-"),
            ",".join(trial_label(i) for i in c["trials"]),
            c["architecture"],
            short_variant(c, keys.get(c["architecture"], set())),
            hp["optimizer"],
            f"{hp['lr']:g}",
            str(hp["batch_size"]),
            str(c["val_acc"]["n"]),
            _mean_std(c["val_acc"]),
            _mean_std(c["test_acc"]),
            duration(c["duration_s"]["mean"]) + (" [yellow]noisy[/]" if c["noisy_epochs"] else ""),
        )
    return table


def run_title(run: dict) -> str:
    split = run["split"]
    sizes = " / ".join(f"{k} {v}" for k, v in split.items())
    return (
        f"Run {run['id']}: {run['dataset']} ({sizes}), {run['status']}; "
        "ranked by validation accuracy (best checkpoint by "
        f"{run['config'].get('select', 'val_loss').replace('_', ' ')})"
    )


def variants_table(results: list, title: str) -> Table:
    """One row per (trial, precision): how the variant was made, its accuracy against fp32, size and speed."""
    from bench.results.deployed import variant_rows

    table = Table(title=title, title_justify="left", caption_justify="left")
    for name in [
        "trial",
        "precision",
        "status",
        "test %",
        "Δ points",
        "top-1 agree %",
        "size ratio",
        "speedup b1",
        "speedup largest",
        "how",
    ]:
        table.add_column(name, justify="left" if name in ("trial", "precision", "status", "how") else "right")
    for result in results:
        trial = result.trial
        for r in variant_rows(result.export, result.variants, result.latency):
            status = {
                VariantStatus.OK: "ok",
                VariantStatus.FLAGGED: "[yellow]flagged[/]",
                VariantStatus.FAILED: "[red]failed[/]",
            }.get(r["status"])
            table.add_row(
                trial_label(trial["idx"]),
                r["precision"],
                status,
                pct(r["test_acc"]),
                f"{r['delta_points']:+.2f}" if r["delta_points"] is not None else "-",
                pct(r["top1_agreement"]),
                times(r["size_ratio"]),
                times(r["speedup_batch1"]),
                times(r["speedup_largest"]),
                r["how"],
            )
    table.caption = (
        "Accuracy on the whole test set through onnxruntime (CPU); Δ against the fp32 export; size and "
        "speedup (ORT CPU p50, batch 1 and the largest batch measured) as variant over fp32."
    )
    return table


def inference_table(results: list, title: str) -> Table:
    """One row per (trial, engine, device, precision, batch size): latency, throughput, load time and memory, the test
    accuracy that engine gives at that precision, and its speedup over PyTorch eager fp32 at the same batch.
    ``results``: bench.deploy.steps.DeployResult."""
    from bench.results.deployed import representative, trustworthy

    table = Table(title=title, title_justify="left", caption_justify="left")
    left = ("trial", "architecture", "export", "engine", "device", "precision")
    for name in [
        "trial",
        "architecture",
        "export",
        "max |Δ|",
        "engine",
        "device",
        "precision",
        "batch",
        "p50 / p90 / p99 ms",
        "n",
        "img/s",
        "load ms",
        "peak MB",
        "test %",
        "vs torch",
    ]:
        table.add_column(name, justify="left" if name in left else "right")
    methods, repeats = [], 1
    for result in results:
        trial, exp, rows, evaluated = result.trial, result.export, result.latency, result.evaluations
        rows = representative(rows)
        accuracy = {(e["engine"], e["precision"]): e["test_acc"] for e in evaluated if e["status"] == "ok"}
        head = [
            trial_label(trial["idx"]),
            trial["architecture"],
            (exp["status"] if exp["status"] == "ok" else f"[red]{exp['status']}[/]: {exp['note']}") if exp else "-",
            f"{exp['max_abs_diff']:.1e}" if exp and exp["max_abs_diff"] is not None else "-",
        ]
        eager = {(device_of(r["provider"]), r["batch_size"]): r for r in rows if r["engine"] == "torch"}
        if not rows:
            table.add_row(*head, *["-"] * 11)
        for i, r in enumerate(rows):
            if r["status"] == "ok" and r["method"] and r["method"] not in methods:
                methods.append(r["method"])
            repeats = max(repeats, r["repeats"])
            precision = r.get("precision") or "fp32"
            base = eager.get((device_of(r["provider"]), r["batch_size"]))
            if r["status"] != "ok":
                cells = [f"[yellow]{r['status']}[/]: {r['note']}", "-", "-", "-", "-"]
            else:
                cells = [
                    f"{r['p50_ms']:.3f} / {r['p90_ms']:.3f} / {r['p99_ms']:.3f}" + _noisy(r),
                    str(r["n"]),
                    f"{r['throughput']:,.0f}",
                    f"{r['session_ms']:,.0f}" if r["session_ms"] is not None else "-",
                    f"{r['peak_rss_mb']:,.0f}" if r.get("peak_rss_mb") is not None else "-",
                ]
            # A ratio of two figures means something only where neither is noise.
            ratio = times(base["p50_ms"] / r["p50_ms"]) if trustworthy(r) and trustworthy(base) else "-"
            table.add_row(
                *(head if i == 0 else [""] * 4),
                r["engine"],
                device_of(r["provider"]),
                precision,
                str(r["batch_size"]),
                *cells,
                pct(accuracy.get((r["engine"], precision))),
                ratio,
            )
    if methods:
        m = methods[0]
        ort = [x for x in methods if "graph_optimization" in x]
        table.caption = (
            f"Latency per call, load and first run kept apart; warm-up {m['warmup']} runs, then at least "
            f"{m['min_runs']} runs and {m['min_time_s']:g} s; percentiles: {m['percentiles']}; intra-op threads "
            f"{m.get('intra_op_threads', '-')}"
            + (f"; ORT graph optimization {graph_levels(ort)}" if ort else "")
            + ". Parity: max |logit difference| against PyTorch on real test images; test %: through that engine at "
            "that precision on the CPU; vs torch: PyTorch eager fp32's p50 over this one's, same device and batch. "
            f"[yellow]noisy[/]: {NOISE_METHOD}; a ratio is shown only where neither figure is noisy"
            + (f". Each figure is the median of {repeats} repetitions' p50." if repeats > 1 else ".")
        )
    return table


def _noisy(row: dict) -> str:
    return " [yellow]noisy[/]" if row.get("noisy") else ""


def catalog_tables(catalog: dict) -> list[tuple[str, Table, str]]:
    """`bench list`: per architecture a heading line, its variants, and a footnote; the lines are as wide as
    the terminal, not as the table."""
    from rich.markup import escape

    shape = "x".join(map(str, catalog["input_shape"]))
    out = []
    for a in catalog["architectures"]:
        table = Table("variant", "params", "MFLOPs")
        for row in a["variants"]:
            if row["params"] is None:
                table.add_row(format_variant(row["variant"]) or "-", f"error: {escape(row['error'])}", "")
            else:
                table.add_row(format_variant(row["variant"]) or "-", count(row["params"]), f"{row['flops'] / 1e6:,.1f}")
        where = f"{catalog['dataset']} {shape}, {catalog['num_classes']} classes"
        note = (
            f"{a['variants_default']} default variants of {a['variants_all']}; params and forward MFLOPs per "
            f"image (torch's flop counter) for {where}"
        )
        out.append((f"[bold]{escape(a['name'])}[/] ({escape(a['plugin'])}): {escape(a['description'])}", table, note))
    return out


def compare_table(rows: list[dict], a: str, b: str) -> Table:
    """`bench compare A B`: per architecture and variant, each run's test accuracy and latency, B against A."""
    table = Table(
        "architecture",
        "variant",
        "differs (A -> B)",
        "A test %",
        "B test %",
        "Δ points",
        "A p50 ms",
        "B p50 ms",
        "B/A latency",
        title=f"B = {b} against A = {a}",
        title_justify="left",
        caption="test %: mean ± standard deviation over seeds (n); p50: ONNX Runtime fp32, CPU, batch 1, of the best "
        "trial; a latency ratio only where neither figure is noisy",
        caption_justify="left",
    )

    def acc(stats: dict) -> str:
        return _mean_std(stats) + (f" (n={stats['n']})" if stats["n"] > 1 else "")

    def p50(latency: dict | None) -> str:
        if latency is None:
            return "-"
        return f"{latency['p50_ms']:.3f}" + (" [yellow]noisy[/]" if latency["noisy"] else "")

    for r in rows:
        change = r["test_acc_change"]
        table.add_row(
            r["architecture"],
            format_variant(r["variant"]) or "-",
            " ".join(f"{k}={format_value(x)}->{format_value(y)}" for k, (x, y) in r["differs"].items()) or "-",
            acc(r["a"]["test_acc"]),
            acc(r["b"]["test_acc"]),
            "-" if change is None else f"{100 * change:+.2f}",
            p50(r["a"]["latency"]),
            p50(r["b"]["latency"]),
            "-" if r["latency_ratio"] is None else f"{r['latency_ratio']:.2f}x",
        )
    return table


def plan_table(plan: dict) -> Table:
    """`bench run --dry-run`: the planned trials, their size and cost, and the estimated training time."""
    rows = plan["trials"]
    settings = [{**r["variant"], **r["hparams"]} for r in rows]
    keys = [
        k for k in dict.fromkeys(k for s in settings for k in s) if len({format_value(s.get(k)) for s in settings}) > 1
    ]
    shape = "x".join(map(str, plan["input_shape"]))
    total = sum(r["estimated_s"] or 0 for r in rows)
    known = all(r["estimated_s"] is not None for r in rows)
    estimate = (
        f"about {total / 60:.0f} min of training in all (rates of {plan['rates_from']})"
        if known and rows
        else "no estimate of the time: this machine has no completed trial in the store to take a rate from"
    )
    table = Table(
        "trial",
        "architecture",
        "what differs",
        "params",
        "MFLOPs/image",
        "train images",
        "training TFLOPs",
        "estimated",
        title=f"Plan: {len(rows)} trials on {plan['dataset']} ({shape}); nothing trained or stored",
        caption=f"Training FLOPs: 3 x forward FLOPs x training images x epochs; {estimate}.",
    )
    for r, setting in zip(rows, settings, strict=True):
        table.add_row(
            trial_label(r["trial"]),
            r["architecture"],
            format_variant({k: v for k, v in setting.items() if k in keys}) or "-",
            f"{r['params'] / 1e6:.2f}M",
            f"{r['flops'] / 1e6:,.1f}",
            f"{r['train_images']:,}",
            f"{r['train_flops'] / 1e12:,.2f}",
            "-" if r["estimated_s"] is None else f"{r['estimated_s'] / 60:.1f} min",
        )
    return table


def plugins_table(infos: list[dict]) -> Table:
    table = Table("plugin", "version", "source", "hooks", "registered", "error")
    from rich.text import Text

    for i in infos:
        errors = [i["error"]] if i["error"] else []
        errors += [f"{name}: {err}" for name, err in i["architecture_errors"].items()]
        registered = i["architectures"] + [f"{d} (dataset)" for d in i.get("datasets", [])]
        registered += [f"{e} (engine)" for e in i.get("engines", [])]
        table.add_row(  # plain text: a plugin's names and errors ("pip install 'cnnbench[timm]'") are not markup
            Text(i["name"]),
            Text(i["version"] or "-"),
            Text("built-in" if i["builtin"] else (i["distribution"] or "-")),
            Text(", ".join(i["hooks"]) or "-"),
            Text(", ".join(registered) or "-"),
            Text("; ".join(errors), style="red") if errors else "",
        )
    return table


def datasets_table(rows: list[dict]) -> Table:
    table = Table("dataset", "plugin", "shape", "classes", "description")
    for r in rows:
        shape = "x".join(map(str, r["input_shape"])) if r["input_shape"] else "-"
        table.add_row(r["name"], r["plugin"], shape, str(r["num_classes"] or "-"), r["description"])
    return table


def runs_table(rows: list[dict]) -> Table:
    table = Table("run", "created (UTC)", "status", "dataset", "trials", "command")
    for r in rows:
        table.add_row(r["id"], r["created_at"], r["status"], r["dataset"], str(r["trials"]), r["command"])
    return table
