"""Report figures as PNG bytes: loss curves, confusion matrices, accuracy-vs-cost trade-offs.
matplotlib's object API with the Agg canvas: no display, no global pyplot state."""

from __future__ import annotations

import functools
import io
import math

from matplotlib import ticker
from matplotlib.figure import Figure

DPI = 110


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _finite(x) -> float:
    return float(x) if x is not None and math.isfinite(x) else float("nan")


def loss_plot(history: list[dict], best_epoch: int | None, title: str) -> bytes:
    """Training and validation loss per epoch, the kept (best) epoch marked."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    train = [_finite(h["train_loss"]) for h in history]
    val = [_finite(h["val_loss"]) for h in history]
    ax.plot(epochs, train, marker="o", markersize=3, label="training loss")
    ax.plot(epochs, val, marker="o", markersize=3, label="validation loss")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="gray", linestyle="--", linewidth=1)
        ax.plot(
            [best_epoch],
            [val[best_epoch - 1]],
            marker="*",
            markersize=14,
            color="tab:red",
            linestyle="none",
            label=f"kept checkpoint (epoch {best_epoch})",
        )
    values = [v for v in train + val if v == v and v > 0]
    if values and max(values) / min(values) > 100:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss (mean per image)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if len(epochs) <= 20:
        ax.set_xticks(epochs)
    ax.legend()
    return _png(fig)


def confusion_plot(matrix: list[list[int]], classes: list[str], title: str) -> bytes:
    """Row-normalized confusion matrix: each row is a true class, its cells the share predicted as each class."""
    n = len(classes)
    rows = [[c / max(sum(row), 1) for c in row] for row in matrix]
    size = max(4.5, 0.55 * n + 2)
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels=classes, rotation=45 if max(map(len, classes)) > 2 else 0, ha="right")
    ax.set_yticks(range(n), labels=classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if rows[i][j] >= 0.005:
                    ax.text(
                        j,
                        i,
                        f"{100 * rows[i][j]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rows[i][j] > 0.5 else "black",
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    return _png(fig)


def _short_number(x: float, _pos=None) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:g}{suffix}"
    return f"{x:g}"


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, accuracy) that no other point beats: lower or equal cost with higher or
    equal accuracy, one of them strictly. Sorted by cost."""
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for j, (c2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def tradeoff_plot(
    labels: list[str],
    costs: list[float],
    accuracies: list[float],
    xlabel: str,
    title: str,
    log_x: bool = False,
    point: str = "trial",
    colors: list[str] | None = None,
    markers: list[str] | None = None,
) -> bytes:
    """Test accuracy against a cost, the Pareto front drawn. Only the front's points are labelled, each label placed
    where it overlaps no other label and no point (tried around its point, else left out: the report lists every
    point in a table). ``colors`` and ``markers`` name each point's groups (engine, precision): one colour per
    colour group, one marker per marker group, explained by a legend outside the axes, where it covers nothing."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(7.6, 4.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    front = pareto_front(list(zip(costs, accuracies, strict=True)))
    color_groups = list(dict.fromkeys(colors or []))
    marker_groups = list(dict.fromkeys(markers or []))
    palette = [f"C{k % 10}" for k in range(len(color_groups))]
    for i in range(len(labels)):
        color = palette[color_groups.index(colors[i])] if colors else "tab:gray"
        marker = MARKERS[marker_groups.index(markers[i]) % len(MARKERS)] if markers else "o"
        ax.scatter(
            [costs[i]],
            [100 * accuracies[i]],
            color=color,
            marker=marker,
            s=36,
            alpha=0.85,
            zorder=3,
            edgecolors="black" if i in front else "none",
            linewidths=0.8,
        )
    ax.plot(
        [costs[i] for i in front],
        [100 * accuracies[i] for i in front],
        color="tab:red",
        linewidth=1,
        drawstyle="steps-post",
        zorder=2,
    )
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(_short_number))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.margins(x=0.15, y=0.12)
    low, high = ax.get_ylim()
    ax.set_ylim(max(low, 0.0), min(high, 100.0))  # an accuracy axis ends at 100%
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    _label_front(ax, fig, front, labels, costs, accuracies)
    handles = [Line2D([], [], color="tab:red", linewidth=1, label="Pareto front (outlined points)")]
    handles += [
        Line2D([], [], color=palette[k], marker="o", linestyle="none", label=g) for k, g in enumerate(color_groups)
    ]
    handles += [
        Line2D(
            [], [], color="black", marker=MARKERS[k % len(MARKERS)], linestyle="none", markerfacecolor="none", label=g
        )
        for k, g in enumerate(marker_groups)
    ]
    if not colors:
        handles.append(Line2D([], [], color="tab:gray", marker="o", linestyle="none", label=point))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    return _png(fig)


OFFSETS = ((5, 5), (5, -11), (-5, 5), (-5, -11), (8, 14), (8, -20), (-8, 14), (-8, -20), (14, -3), (-14, -3))


def _label_front(ax, fig, front, labels, costs, accuracies) -> None:
    """Label each Pareto point at the first offset whose text box overlaps no placed label and no point."""
    renderer = fig.canvas.get_renderer()
    points = [ax.transData.transform((c, 100 * a)) for c, a in zip(costs, accuracies, strict=True)]
    taken = []
    # the most accurate first: it takes a place above, so a point just below it gets its label below, not beside it
    for i in sorted(front, key=lambda k: -accuracies[k]):
        for dx, dy in OFFSETS:
            text = ax.annotate(
                labels[i],
                (costs[i], 100 * accuracies[i]),
                textcoords="offset points",
                xytext=(dx, dy),
                fontsize=7,
                ha="left" if dx > 0 else "right",
            )
            box = text.get_window_extent(renderer).expanded(1.05, 1.15)
            inside = ax.get_window_extent(renderer)
            clear = not any(box.overlaps(b) for b in taken) and not any(
                box.contains(x, y) for k, (x, y) in enumerate(points) if k != i
            )
            if clear and inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1):
                taken.append(box)
                break
            text.remove()


def accuracy_time_plot(series: list[tuple[str, list[float], list[float]]], target: float | None, title: str) -> bytes:
    """Validation accuracy (%) against cumulative training seconds, one line per trial; the target dashed."""
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.subplots()
    for label, seconds, accs in series:
        ax.plot(seconds, [100 * a for a in accs], marker="o", markersize=2.5, linewidth=1.2, label=label)
    if target is not None:
        ax.axhline(100 * target, color="gray", linestyle="--", linewidth=1, label=f"target {100 * target:g}%")
    ax.set_xlabel("training time (s, cumulative; validation excluded)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if len(series) <= 12:
        ax.legend(fontsize=8)
    return _png(fig)


def search_plot(series: list[tuple[str, list[int], list[float | None]]], metric: str, title: str) -> bytes:
    """A search's progress: each trial's selection metric against its number (dots) and the best so far (a step
    line), one colour per run."""
    fig = Figure(figsize=(7.2, 4.4))
    ax = fig.subplots()
    lower = metric == "val_loss"
    scale = 1 if lower else 100
    for label, numbers, values in series:
        points = [(n, scale * v) for n, v in zip(numbers, values, strict=True) if v is not None and math.isfinite(v)]
        if not points:
            continue
        best, running = [], None
        for _, v in points:
            running = v if running is None else (min(running, v) if lower else max(running, v))
            best.append(running)
        xs = [n for n, _ in points]
        (line,) = ax.step(xs, best, where="post", linewidth=1.4, label=f"{label}: best so far")
        ax.scatter(xs, [v for _, v in points], s=14, alpha=0.6, color=line.get_color())
    ax.set_xlabel("trial (in the order the search chose them)")
    ax.set_ylabel("validation loss" if lower else "validation accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def batch_curve_plot(series: list[tuple[str, list[int], list[float], list[float]]], title: str) -> bytes:
    """Images/s (left) and p50 latency (right) against batch size, one line per (model, precision, engine)."""
    fig = Figure(figsize=(10.0, 4.2))
    rate_ax, latency_ax = fig.subplots(1, 2)
    for label, batches, rates, p50s in series:
        style = "--" if label.endswith("torch") else "-"
        rate_ax.plot(batches, rates, style, marker="o", markersize=3, label=label)
        latency_ax.plot(batches, p50s, style, marker="o", markersize=3, label=label)
    for ax, ylabel in ((rate_ax, "images/s (batch / mean latency)"), (latency_ax, "p50 latency per call (ms)")):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _pos: f"{x:g}"))
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(_short_number))
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3, which="both")
    rate_ax.set_title(title, fontsize=10, loc="left")
    if len(series) <= 12:
        latency_ax.legend(fontsize=7)
    return _png(fig)


def load_plot(series: list[tuple[str, list[float], list[float | None]]], bound: float | None, title: str) -> bytes:
    """p99 latency against offered queries/s, one line per label; a rate that failed (None) is an x at the bound."""
    fig = Figure(figsize=(8.0, 4.6))
    ax = fig.subplots()
    for label, rates, p99s in series:
        passed = [(r, p) for r, p in zip(rates, p99s, strict=True) if p is not None]
        line = ax.plot([r for r, _ in passed], [p for _, p in passed], marker="o", markersize=3, label=label)[0]
        failed = [r for r, p in zip(rates, p99s, strict=True) if p is None]
        if failed and bound:
            ax.plot(failed, [bound] * len(failed), "x", color=line.get_color(), markersize=6)
    if bound:
        ax.axhline(bound, linestyle="--", color="grey", linewidth=1, label=f"bound {bound:g} ms")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(_short_number))
    ax.set_xlabel("offered load (queries/s, Poisson)")
    ax.set_ylabel("p99 latency from arrival (ms)")
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(True, alpha=0.3, which="both")
    if len(series) <= 12:
        ax.legend(fontsize=7)
    return _png(fig)


def fonts_for(labels) -> tuple[list[str], str | None]:
    """The font families that draw ``labels`` and a note on what none draws (_fonts_for, cached: the report and
    the CLI's warning ask for the same labels)."""
    families, note = _fonts_for(tuple(sorted({str(label) for label in labels})))
    return list(families), note


@functools.lru_cache(maxsize=8)
def _fonts_for(labels: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """The font families that draw every character of ``labels`` (class names in any script: DejaVu Sans first,
    then installed fonts that have what it lacks, which matplotlib falls back to), and a note naming the characters
    no installed font has (drawn as boxes), or None."""
    from matplotlib import font_manager, ft2font

    missing = {c for label in labels for c in str(label) if ord(c) > 0x24F}  # beyond Latin: DejaVu may lack it
    families = ["DejaVu Sans"]
    if not missing:
        return tuple(families), None
    for entry in sorted(font_manager.fontManager.ttflist, key=lambda e: e.name != "DejaVu Sans"):
        if entry.name.startswith("Last Resort"):  # its glyphs for every character are boxes naming the code point
            continue
        try:
            charmap = ft2font.FT2Font(entry.fname).get_charmap()
        except (OSError, RuntimeError):
            continue
        covered = {c for c in missing if ord(c) in charmap}
        if covered:
            missing -= covered
            families.append(entry.name)
        if not missing:
            break
    families = list(dict.fromkeys(families))
    if not missing:
        return tuple(families), None
    return tuple(families), (
        f"class names hold characters that no installed font draws ({''.join(sorted(missing)[:8])}): the figures "
        "show them as boxes (the tables and JSON keep them); install a font that has them, e.g. fonts-noto-cjk"
    )
