"""The report's serving section: every benchmarked model x engine x precision in the serving scenarios (table), and
the server's p99 against offered load (figure: one line per model x engine x precision and configuration, the
bound drawn)."""

from __future__ import annotations

from bench.core.formats import engine_short
from bench.report.views import TrialView
from bench.results.columns import markdown
from bench.results.serving import bound_of, method_text, serving_columns, serving_targets


def serving_section(views: list[TrialView], write_png) -> str | None:
    rows = [{**t, "view": v} for v in views for t in serving_targets(v.serving)]
    if not rows:
        return None
    bound = bound_of(rows)
    parts = [
        f"Measured with `bench benchmark RUN --scenario ...`. {method_text(rows)}",
        markdown(serving_columns(rows, lambda t: t["view"].name), rows),
    ]
    series = _load_series(views)
    if series:
        from bench.report.plots import load_plot

        name = write_png("serving_load.png", load_plot(series, bound, "Server: p99 latency against offered load"))
        parts.append(
            f"![p99 against offered load]({name})\n\nEach point is a rate the server scenario tried (its queries' "
            "p99 estimate); a rate stopped early, its queries already over the bound, is drawn at the bound with "
            "an x. The dashed line is the bound."
        )
    return "\n\n".join(parts)


def _load_series(views: list[TrialView]) -> list[tuple[str, list[float], list[float | None]]]:
    """(label, rates, p99s or None where stopped early) per model x engine x precision x server setup (the first
    repetition)."""
    out = []
    for v in views:
        for r in v.serving:
            rates = (r.get("result") or {}).get("rates") or []
            if r["scenario"] != "server" or r["repeat"] != 1 or not rates:
                continue
            label = f"{v.name} {v.trial['architecture']} {engine_short(r['engine'])} {r['precision']}"
            if r["setup"] != "1 worker":
                label += f" ({r['setup']})"
            out.append((label, [x["rate"] for x in rates], [x.get("p99_ms") if x["passed"] else None for x in rates]))
    return out
