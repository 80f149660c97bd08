"""Serving figures (bench.runtime.scenarios, the store's serving table) as the terminal, the report, its CSV and MLflow
show them: one row per trial x engine x device x precision, single-stream percentiles (or the samples they needed),
offline images/s, and per server configuration the most queries/s under the bound. With repetitions (each in its own
worker process) a figure is their mean +- std, and their spread gives the `unstable` verdict, pyperf's way."""

from __future__ import annotations

import statistics

from bench.core.formats import device_of
from bench.core.status import MeasurementStatus
from bench.results.columns import Column
from bench.results.percentiles import RULE

# pyperf's thresholds (pyperf/_cli.py): a figure whose repetitions have a standard deviation of at least 10% of their
# mean, or a minimum or maximum at least 50% away from it, is unstable.
UNSTABLE_CV = 0.10
UNSTABLE_RANGE = 0.50
UNSTABLE_RULE = (
    f"unstable: over repetitions in separate processes, a standard deviation of at least {UNSTABLE_CV:.0%} of the "
    f"mean, or a minimum or maximum at least {UNSTABLE_RANGE:.0%} away from it (pyperf's thresholds)"
)
SERVER_RULE = (
    "server: Poisson arrivals, latency from each query's scheduled arrival (queueing counts); the most queries/s "
    "whose p99 estimate stays under the bound, the rates tried bracketed then bisected to 5%; a rate stops as soon as "
    "more of its queries are over the bound than its query count allows"
)


def spread(values: list[float]) -> dict:
    """mean, std, cv, n and the unstable verdict of one figure's repetitions."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "cv": None, "n": 0, "unstable": None}
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    cv = std / mean if mean else 0.0
    far = max(abs(v - mean) for v in values) / mean if mean else 0.0
    unstable = len(values) > 1 and (cv >= UNSTABLE_CV or far >= UNSTABLE_RANGE)
    return {"mean": mean, "std": std, "cv": cv, "n": len(values), "unstable": unstable}


def _figure(rows: list[dict], key: str) -> dict:
    return spread([(r.get("result") or {}).get(key) for r in rows if r["status"] == MeasurementStatus.OK])


def serving_targets(serving: list[dict]) -> list[dict]:
    """One entry per (engine, provider, precision) of a trial's serving rows: its scenarios' figures over repetitions
    ({scenario or server setup: {figure: spread}}) and the rows themselves."""
    groups: dict[tuple, dict] = {}
    for r in serving:
        key = (r["engine"], r["provider"], r["precision"])
        g = groups.setdefault(key, {"engine": key[0], "provider": key[1], "precision": key[2], "rows": {}})
        g["rows"].setdefault((r["scenario"], r["setup"]), []).append(r)
    out = []
    for g in groups.values():
        figures = {}
        for (scenario, setup), rows in g["rows"].items():
            keys = {"single-stream": ("p50_ms", "p90_ms", "p99_ms"), "offline": ("throughput",), "server": ("max_qps",)}
            figures[setup_key(scenario, setup, rows)] = {k: _figure(rows, k) for k in keys.get(scenario, ())}
            figures[setup_key(scenario, setup, rows)]["rows"] = rows
        out.append({**g, "figures": figures})
    return out


def setup_key(scenario: str, setup: str, rows: list[dict]) -> str:
    """single-stream, offline, or a server configuration with its bound ("p99 <= 10 ms, 1 worker")."""
    if scenario != "server" or not setup:  # not measured: unavailable, or failed before its first rate
        return scenario
    bound = next(((r.get("result") or {}).get("bound_ms") for r in rows if r.get("result")), None)
    return f"p99 <= {bound:g} ms, {setup}" if bound else setup


def _first_ok(rows: list[dict]) -> dict | None:
    return next((r for r in rows if r["status"] == MeasurementStatus.OK), None)


def _value(s: dict, digits: str, unit: str = "") -> str:
    text = f"{s['mean']:{digits}}{unit}"
    if s["n"] > 1:
        text += f" ± {s['std']:{digits}} (cv {s['cv']:.0%})" + (" unstable" if s["unstable"] else "")
    return text


def _cell(entry: dict | None, text) -> str:
    """A scenario's cell: ``text(entry, its first row that ran)``, else why none ran ('-': not measured)."""
    if not entry:
        return "-"
    first = _first_ok(entry["rows"])
    if first is None:
        r = entry["rows"][0]
        return f"{r['status']}: {r.get('note') or ''}"
    return text(entry, first)


def single_text(entry: dict | None) -> str:
    """p50 / p90 / p99 ms, each its estimate or 'needs N' (the samples it needed)."""

    def text(entry, first):
        needs = first["result"]
        parts = [
            _value(entry[f"p{q}_ms"], ".3f") if entry[f"p{q}_ms"]["n"] else f"needs {needs.get(f'p{q}_needs', '?')}"
            for q in (50, 90, 99)
        ]
        return " / ".join(parts) + f" (n {needs['queries']:,})"

    return _cell(entry, text)


def offline_text(entry: dict | None) -> str:
    return _cell(entry, lambda e, first: _value(e["throughput"], ",.0f") + f" (batch {first['result']['batch_size']})")


def server_text(entry: dict | None) -> str:
    """The most queries/s under the bound (p99 there; the rate above it that failed), or why there is none."""

    def text(entry, first):
        result = first["result"]
        if entry["max_qps"]["n"] == 0:
            return f"not met: {first.get('note') or '-'}"
        out = _value(entry["max_qps"], ",.0f")
        if entry["max_qps"]["n"] == 1:
            failed = f"; {result['failed_qps']:,.0f} failed" if result.get("failed_qps") else ""
            out += f" (p99 {result['p99_ms']:.2f} ms{failed})"
        return out

    return _cell(entry, text)


def setups(targets: list[dict]) -> list[str]:
    """The server configurations measured, with their bounds, in the order first met."""
    out: list[str] = []
    for t in targets:
        for (scenario, setup), rows in t["rows"].items():
            if scenario == "server" and (key := setup_key(scenario, setup, rows)) not in out:
                out.append(key)
    return out


def serving_columns(targets: list[dict], trial=None) -> list[Column]:
    """The serving table's columns; ``trial(row)``: a leading trial column's text, if any."""
    out = [Column("trial", trial, left=True)] if trial else []
    out += [
        Column("engine", lambda t: t["engine"], left=True),
        Column("device", lambda t: device_of(t["provider"]), left=True),
        Column("precision", lambda t: t["precision"], left=True),
    ]
    if any("single-stream" in t["figures"] for t in targets):
        out.append(Column("single-stream ms p50 / p90 / p99", lambda t: single_text(t["figures"].get("single-stream"))))
    if any("offline" in t["figures"] for t in targets):
        out.append(Column("offline img/s", lambda t: offline_text(t["figures"].get("offline"))))
    for key in setups(targets):
        out.append(Column(f"server QPS ({key})", lambda t, k=key: server_text(t["figures"].get(k))))
    return out


def bound_of(targets: list[dict]) -> float | None:
    for t in targets:
        for (scenario, _), rows in t["rows"].items():
            ok = _first_ok(rows)
            if scenario == "server" and ok:
                return ok["result"].get("bound_ms")
    return None


def method_text(targets: list[dict]) -> str:
    """How the serving figures were measured, for a caption."""
    methods = [r.get("method") for t in targets for rows in t["rows"].values() for r in rows if r.get("method")]
    m = methods[0] if methods else {}
    repeats = max((len(rows) for t in targets for rows in t["rows"].values()), default=1)
    text = (
        f"Single-stream: one image per query, at least {m.get('queries', '-')} queries after {m.get('warmup', '-')} "
        f"warm-up; {RULE}. Offline: the test images in one pass at the batch size that was fastest in a short probe. "
        f"{SERVER_RULE}. Intra-op threads {m.get('intra_op_threads', '-')}."
    )
    if repeats > 1:
        text += f" Each figure: mean ± std over {repeats} repetitions; {UNSTABLE_RULE}."
    return text
