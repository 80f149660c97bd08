"""The terminal tables of the `bench` commands: each one column spec (bench.results.columns) rendered by rich."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bench.core.formats import count, device_of, duration, pct, run_label, times, trial_label
from bench.core.noise import NOISE_METHOD
from bench.core.status import ExportStatus, MeasurementStatus, TrialStatus
from bench.models.registry import format_value, format_variant
from bench.report.compare import COMPARE_METHOD, compare_columns
from bench.results.columns import Column
from bench.results.deployed import RATIO_RULE, representative, speedup
from bench.results.diagnosis import CHANCE_RULE
from bench.results.percentiles import needed, supported
from bench.results.significance import INTERVAL_METHOD, test_interval
from bench.results.tables import VARIANT_COLUMNS, VARIANTS_METHOD, swept_columns, variants_of
from bench.runtime.protocol import graph_levels


def rich_table(
    columns, rows, title: str | None = None, caption: str | None = None, markup: bool = True, wrap: bool = True
) -> Table:
    """``rows`` as a rich table of ``columns``; cells are rich markup unless ``markup`` is False (a plugin's names and
    errors are shown as they are); with ``wrap`` False, only the columns marked ``wrap`` break over lines."""
    columns = list(columns)
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for c in columns:
        table.add_column(c.name, justify="left" if c.left else "right", no_wrap=not (wrap or c.wrap))
    for row in rows:
        cells = []
        for c in columns:
            text = c.cell(row)
            cells.append(
                Text.from_markup(text, style=c.styled(row) or "") if markup else Text(text, c.styled(row) or "")
            )
        table.add_row(*cells)
    return table


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
NOISY = " [yellow]noisy[/]"


def _rank(row: dict) -> str:
    return ("★ " if row["winner"] else "") + (str(row["rank"]) if row["rank"] else "-")


def _hparam_columns(rows: list[dict]) -> list[Column]:
    return [
        Column("opt", lambda t: t["hparams"]["optimizer"], left=True),
        Column("lr", lambda t: f"{t['hparams']['lr']:g}"),
        Column("batch", lambda t: str(t["hparams"]["batch_size"])),
        *swept_columns(rows, lambda t: t["hparams"]),
    ]


def leaderboard_table(ranked: list[dict], title: str) -> Table:
    """`bench run`'s and `bench report`'s ranking: one row per trial."""
    several = len({t.get("run_id") for t in ranked}) > 1  # trials of several runs: each named with its run
    sets = list(dict.fromkeys(t["test_set"] for t in ranked if t.get("test_set")))
    keys = varying(ranked)

    def status(t: dict) -> str:
        text = t["status"] + (f": {t['note']}" if t.get("note") and t["status"] != TrialStatus.COMPLETED else "")
        return text + (", [yellow]at chance[/]" if t.get("learned") is False else "")

    columns = [
        Column("#", _rank),
        Column(
            "trial",
            lambda t: trial_label(t["idx"], (t.get("run_name") or t.get("run_id")) if several else None),
            left=True,
        ),
        Column("architecture", lambda t: t["architecture"], left=True),
        Column("variant", lambda t: short_variant(t, keys.get(t["architecture"], set())), left=True, wrap=True),
        *_hparam_columns(ranked),
        Column(
            "best/epochs", lambda t: f"{t['best_epoch'] or '-'}/{'-' if t['epochs_run'] is None else t['epochs_run']}"
        ),
        Column("val %", lambda t: pct(t["val_acc"])),
        Column("test %", lambda t: pct(t["test_acc"])),
        Column("test 95%", test_interval),
        Column("params", lambda t: count(t["params"])),
        Column("time", lambda t: duration(t["duration_s"]) + (NOISY if t.get("noisy_epochs") else "")),
        Column("status", status, left=True, style=lambda t: STATUS_STYLE.get(t["status"], "white"), wrap=True),
    ]
    caption = f"★ best validation accuracy of its architecture; {INTERVAL_METHOD}"
    if any(t.get("learned") is False for t in ranked):
        caption += (
            f"; at chance: did not learn ({CHANCE_RULE}), so no winner, not deployed, off the fronts (`bench benchmark "
            "RUN TRIAL` deploys one anyway)"
        )
    if len(sets) > 1:  # ranks start again on each test set: say which one each row is ranked on
        columns.append(Column("test set", lambda t: t.get("test_set") or "-", left=True, wrap=True))
        caption += "; ranks are per test set, never across them"
    if any(t.get("noisy_epochs") for t in ranked):
        caption += f"; time [yellow]noisy[/]: some of its epochs were ({NOISE_METHOD})"
    return rich_table(columns, ranked, title, caption, wrap=False)


def _mean_std(stats: dict, scale: float = 100, digits: int = 2) -> str:
    if stats["mean"] is None:
        return "-"
    text = f"{scale * stats['mean']:.{digits}f}"
    return text + (f" ± {scale * stats['std']:.{digits}f}" if stats["std"] is not None else "")


def configurations_table(configs: list[dict], title: str) -> Table:
    """One row per configuration (trials that differ only by seed): mean ± standard deviation over its seeds."""
    keys = varying(configs)
    columns = [
        Column("#", _rank),
        Column("trials", lambda c: ",".join(trial_label(i) for i in c["trials"]), left=True),
        Column("architecture", lambda c: c["architecture"], left=True),
        Column("variant", lambda c: short_variant(c, keys.get(c["architecture"], set())), left=True, wrap=True),
        *_hparam_columns(configs),
        Column("n", lambda c: str(c["val_acc"]["n"])),
        Column("val %", lambda c: _mean_std(c["val_acc"])),
        Column("test %", lambda c: _mean_std(c["test_acc"])),
        Column("time", lambda c: duration(c["duration_s"]["mean"]) + (NOISY if c["noisy_epochs"] else "")),
    ]
    caption = (
        "mean ± sample standard deviation over the finished trials of each configuration (n); ★ holds its "
        "architecture's best trial"
    )
    return rich_table(columns, configs, title, caption)


def run_title(run: dict) -> str:
    split = run["split"]
    sizes = " / ".join(f"{k} {v}" for k, v in split.items())
    return (
        f"Run {run_label(run)}: {run['dataset']} ({sizes}), {run['status']}; "
        "ranked by validation accuracy (best checkpoint by "
        f"{run['config'].get('select', 'val_loss').replace('_', ' ')})"
    )


def variants_table(results: list, title: str) -> Table:
    """One row per (trial, precision): how the variant was made, its accuracy against fp32, size and speed."""
    return rich_table(VARIANT_COLUMNS, variants_of(results), title, f"{VARIANTS_METHOD} Speedup: {RATIO_RULE}.")


def _latency_cells(r: dict) -> str:
    if r["status"] is None:  # a trial with no measurement
        return "-"
    if r["status"] != MeasurementStatus.OK:
        return f"[yellow]{r['status']}[/]: {escape(r['note'] or '')}"
    cells = [
        f"{r[f'p{q}_ms']:.3f}" if supported(q, r["n"]) else f"needs {needed(q)}" for q in (50, 90, 99)
    ]  # a percentile from fewer samples than its early-stopping bound needs would be one of the largest samples
    return " / ".join(cells) + (NOISY if r.get("noisy") else "")


def _cold_start(r: dict) -> str:
    return " / ".join("-" if r.get(k) is None else f"{r[k]:,.1f}" for k in ("session_ms", "first_ms"))


def _ok(r: dict, text) -> str:
    return text(r) if r["status"] == MeasurementStatus.OK else "-"


INFERENCE_COLUMNS = (
    Column("trial", lambda r: trial_label(r["trial"]["idx"]) if r["head"] else "", left=True),
    Column("architecture", lambda r: r["trial"]["architecture"] if r["head"] else "", left=True),
    Column("export", lambda r: r["export_text"] if r["head"] else "", left=True, wrap=True),
    Column("max |Δ|", lambda r: r["max_diff"] if r["head"] else ""),
    Column("engine", lambda r: r["engine"], left=True),
    Column("device", lambda r: device_of(r["provider"]), left=True),
    Column("precision", lambda r: r["precision"], left=True),
    Column("batch", lambda r: str(r["batch_size"])),
    Column("p50 / p90 / p99 ms", _latency_cells),
    Column("n", lambda r: _ok(r, lambda r: str(r["n"]))),
    Column("img/s", lambda r: _ok(r, lambda r: f"{r['throughput']:,.0f}")),
    Column("load / first ms", lambda r: _ok(r, _cold_start)),
    Column("peak MB", lambda r: _ok(r, lambda r: "-" if r.get("peak_rss_mb") is None else f"{r['peak_rss_mb']:,.0f}")),
    Column("test %", lambda r: pct(r["test_acc"])),
    Column("vs torch", lambda r: r["vs_torch"]),
)


def _export_text(exp: dict | None) -> str:
    if exp is None:
        return "-"
    return (
        exp["status"] if exp["status"] == ExportStatus.OK else f"[red]{exp['status']}[/]: {escape(exp['note'] or '')}"
    )


def _inference_rows(result) -> list[dict]:
    """One row per (engine, device, precision, batch size) of a trial's representative measurements, the trial's
    cells on its first row only."""
    exp, rows = result.export, representative(result.latency)
    accuracy = {
        (e["engine"], e["precision"]): e["test_acc"] for e in result.evaluations if e["status"] == MeasurementStatus.OK
    }
    eager = {(device_of(r["provider"]), r["batch_size"]): r for r in rows if r["engine"] == "torch"}
    head = {
        "trial": result.trial,
        "export_text": _export_text(exp),
        "max_diff": f"{exp['max_abs_diff']:.1e}" if exp and exp["max_abs_diff"] is not None else "-",
    }
    out = []
    for i, r in enumerate(rows):
        base = eager.get((device_of(r["provider"]), r["batch_size"]))
        ratio = times(speedup(base, r))
        out.append(
            {**r, **head, "head": i == 0, "test_acc": accuracy.get((r["engine"], r["precision"])), "vs_torch": ratio}
        )
    if not rows:  # a trial with no measurement: its export alone
        blank = dict.fromkeys(("engine", "provider", "precision", "batch_size", "note"), "-")
        out.append({**blank, **head, "head": True, "status": None, "test_acc": None, "vs_torch": "-"})
    return out


def inference_table(results: list, title: str) -> Table:
    """One row per (trial, engine, device, precision, batch size): latency, throughput, load time and memory, the test
    accuracy that engine gives at that precision, and its speedup over PyTorch eager fp32 at the same batch.
    ``results``: bench.deploy.steps.DeployResult."""
    rows = [row for result in results for row in _inference_rows(result)]
    methods = [r["method"] for r in rows if r["status"] == MeasurementStatus.OK and r.get("method")]
    caption = None
    if methods:
        m, repeats = methods[0], max(r.get("repeats") or 1 for r in rows)
        ort = [x for x in methods if "graph_optimization" in x]
        caption = (
            f"Latency per call, load and first run kept apart; warm-up {m['warmup']} runs, then at least "
            f"{m['min_runs']} runs and {m['min_time_s']:g} s; percentiles: {m['percentiles']}, each shown only with "
            "the runs its bound needs (p90 64, p99 662: MLPerf LoadGen's early-stopping rule); intra-op threads "
            f"{m.get('intra_op_threads', '-')}"
            + (f"; ORT graph optimization {graph_levels(ort)}" if ort else "")
            + ". Parity: max |logit difference| against PyTorch on real test images; test %: through that engine at "
            "that precision on the CPU; vs torch: PyTorch eager fp32's p50 over this one's, same device and batch. "
            f"[yellow]noisy[/]: {NOISE_METHOD}; {RATIO_RULE}"
            + (f". Each figure is the median of {repeats} repetitions' p50." if repeats > 1 else ".")
        )
    return rich_table(INFERENCE_COLUMNS, rows, title, caption, wrap=False)


CATALOG_COLUMNS = (
    Column("variant", lambda r: escape(format_variant(r["variant"]) or "-"), left=True),
    Column("params", lambda r: count(r["params"]) if r["params"] is not None else f"error: {escape(r['error'])}"),
    Column("MFLOPs", lambda r: "" if r["params"] is None else f"{r['flops'] / 1e6:,.1f}"),
)


def catalog_tables(catalog: dict) -> list[tuple[str, Table, str]]:
    """`bench list`: per architecture a heading line, its variants, and a footnote; the lines are as wide as
    the terminal, not as the table."""
    shape = "x".join(map(str, catalog["input_shape"]))
    where = f"{catalog['dataset']} {shape}, {catalog['num_classes']} classes"
    out = []
    for a in catalog["architectures"]:
        note = (
            f"{a['variants_default']} default variants of {a['variants_all']}; params and forward MFLOPs per "
            f"image (torch's flop counter) for {where}"
        )
        heading = f"[bold]{escape(a['name'])}[/] ({escape(a['plugin'])}): {escape(a['description'])}"
        out.append((heading, rich_table(CATALOG_COLUMNS, a["variants"]), note))
    return out


def compare_table(rows: list[dict], a: str, b: str) -> Table:
    """`bench compare A B`: per architecture and variant, each run's test accuracy and latency, B against A."""
    caption = COMPARE_METHOD
    return rich_table(compare_columns(NOISY), rows, f"B = {b} against A = {a}", caption)


def plan_table(plan: dict) -> Table:
    """`bench run --dry-run`: the planned trials, their size and cost, and the estimated training time."""
    rows = plan["trials"]
    settings = [{**r["variant"], **r["hparams"]} for r in rows]
    keys = [
        k for k in dict.fromkeys(k for s in settings for k in s) if len({format_value(s.get(k)) for s in settings}) > 1
    ]
    columns = (
        Column("trial", lambda r: trial_label(r["trial"]), left=True),
        Column("architecture", lambda r: r["architecture"], left=True),
        Column(
            "what differs",
            lambda r: format_variant({k: v for k, v in {**r["variant"], **r["hparams"]}.items() if k in keys}) or "-",
            left=True,
            wrap=True,
        ),
        Column("params", lambda r: f"{r['params'] / 1e6:.2f}M"),
        Column("MFLOPs/image", lambda r: f"{r['flops'] / 1e6:,.1f}"),
        Column("train images", lambda r: f"{r['train_images']:,}"),
        Column("training TFLOPs", lambda r: f"{r['train_flops'] / 1e12:,.2f}"),
        Column("estimated", lambda r: "-" if r["estimated_s"] is None else f"{r['estimated_s'] / 60:.1f} min"),
    )
    shape = "x".join(map(str, plan["input_shape"]))
    title = f"Plan: {len(rows)} trials on {plan['dataset']} ({shape}); nothing trained or stored"
    caption = f"Training FLOPs: 3 x forward FLOPs x training images x epochs; {plan['estimate']['text']}."
    return rich_table(columns, rows, title, caption)


def _plugin_errors(i: dict) -> str:
    errors = [i["error"]] if i["error"] else []
    return "; ".join(errors + [f"{name}: {err}" for name, err in i["architecture_errors"].items()])


PLUGIN_COLUMNS = (  # plain text: a plugin's names and errors ("pip install 'cnnbench[timm]'") are not markup
    Column("plugin", lambda i: i["name"], left=True),
    Column("version", lambda i: i["version"] or "-", left=True),
    Column("source", lambda i: "built-in" if i["builtin"] else (i["distribution"] or "-"), left=True),
    Column("hooks", lambda i: ", ".join(i["hooks"]) or "-", left=True, wrap=True),
    Column(
        "registered",
        lambda i: (
            ", ".join(
                i["architectures"]
                + [f"{d} (dataset)" for d in i.get("datasets", [])]
                + [f"{e} (engine)" for e in i.get("engines", [])]
            )
            or "-"
        ),
        left=True,
        wrap=True,
    ),
    Column("error", _plugin_errors, left=True, style=lambda i: "red", wrap=True),
)


def plugins_table(infos: list[dict]) -> Table:
    return rich_table(PLUGIN_COLUMNS, infos, markup=False)


DATASET_COLUMNS = (
    Column("dataset", lambda r: r["name"], left=True),
    Column("plugin", lambda r: r["plugin"], left=True),
    Column("shape", lambda r: "x".join(map(str, r["input_shape"])) if r["input_shape"] else "-", left=True),
    Column("classes", lambda r: str(r["num_classes"] or "-")),
    Column("description", lambda r: r["description"], left=True, wrap=True),
)


def datasets_table(rows: list[dict]) -> Table:
    return rich_table(DATASET_COLUMNS, rows, markup=False)


RUN_COLUMNS = (
    Column("run", lambda r: r["id"], left=True),
    Column("name", lambda r: r["name"] or "-", left=True),
    Column("created (UTC)", lambda r: r["created_at"], left=True),
    Column("status", lambda r: r["status"], left=True),
    Column("dataset", lambda r: r["dataset"], left=True, wrap=True),
    Column("trials", lambda r: str(r["trials"])),
    Column("best test %", lambda r: pct(r["best_test_acc"])),
    Column("command", lambda r: r["command"], left=True, wrap=True),
)


def runs_table(rows: list[dict]) -> Table:
    caption = "best test %: of the trial ranked first by validation accuracy (the one a run selects)"
    return rich_table(RUN_COLUMNS, rows, caption=caption, markup=False)
