"""What a report shows, read from the store: each trial with its history, export, measurements and diagnosis, ranked
by test accuracy; the runs a report is about; the figures derived from histories (time to accuracy)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.core.errors import BenchError
from bench.core.formats import CPU_PROVIDERS, trial_label
from bench.core.status import FINISHED, ExportStatus, MeasurementStatus, Precision
from bench.models.registry import format_variant
from bench.results import diagnosis
from bench.results.deployed import representative
from bench.results.leaderboard import rank
from bench.store import Store


@dataclass
class TrialView:
    run: dict
    trial: dict
    history: list[dict]
    export: dict | None
    latency: list[dict]  # one row per (precision, engine, provider, batch): bench.results.deployed.representative
    variants: list[dict] = field(default_factory=list)
    repetitions: list[dict] = field(default_factory=list)  # every stored measurement, every repetition
    evaluations: list[dict] = field(default_factory=list)  # the test accuracy of each engine at each precision
    serving: list[dict] = field(default_factory=list)  # serving scenarios, every configuration and repetition
    findings: list[diagnosis.Finding] = field(default_factory=list)
    test_rank: int | None = None
    name: str = ""  # t003, or <run>/t003 in a report over several runs

    @property
    def slug(self) -> str:
        return self.name.replace("/", "_")

    def onnx(self, providers: tuple[str, str] = CPU_PROVIDERS, batch: int | None = None) -> dict | None:
        """The fp32 ONNX Runtime measurement on ``providers`` at ``batch`` (None: the largest batch measured)."""
        rows = [
            r
            for r in self.latency
            if r["engine"] == "onnxruntime"
            and r["provider"] in providers
            and r["status"] == MeasurementStatus.OK
            and r["precision"] == Precision.FP32
        ]
        if batch is None:
            return max(rows, key=lambda r: r["batch_size"], default=None)
        return next((r for r in rows if r["batch_size"] == batch), None)

    @property
    def status(self) -> str:
        s = self.trial["status"]
        if self.export and self.export["status"] != ExportStatus.OK:
            s += f", ONNX {self.export['status']}"
        return s


def gather(store: Store, runs: list[dict]) -> list[TrialView]:
    """Every trial of ``runs`` with its history, export and latency, ranked by test accuracy (completed
    trials first; the rest in trial order)."""
    views = []
    for run in runs:
        for t in rank(store.trials(run["id"])):
            name = trial_label(t["idx"], None if len(runs) == 1 else run.get("name") or run["id"])
            history = store.history(t["id"])
            latency = store.latency_of(t["id"])
            views.append(
                TrialView(
                    run,
                    t,
                    history,
                    store.export_of(t["id"]),
                    representative(latency),
                    store.variants_of(t["id"]),
                    latency,
                    store.evaluations_of(t["id"]),
                    store.serving_of(t["id"]),
                    diagnosis.diagnose(t, history),
                    name=name,
                )
            )
    groups = list(dict.fromkeys(comparable(r) for r in runs))
    ranked = [v for v in views if v.trial["status"] in FINISHED and v.trial["test_acc"] is not None]
    ranked.sort(
        key=lambda v: (
            groups.index(comparable(v.run)),
            -v.trial["test_acc"],
            -(v.trial["val_acc"] or 0),
            v.run["created_at"],
            v.trial["idx"],
        )
    )
    for group in groups:  # ranks start again in each group of comparable runs: never across datasets
        for i, v in enumerate((v for v in ranked if comparable(v.run) == group), 1):
            v.test_rank = i
    return ranked + [v for v in views if v.test_rank is None]


def comparable(run: dict) -> str:
    """What runs must share for their test accuracies to be ranked together: the dataset, its test set's size and,
    for runs that recorded it, the hash of the test images and labels (an image folder of the same name and size
    whose test images changed between two runs is another test)."""
    test = (run.get("split") or {}).get("test")
    if test is None:
        return run["dataset"]
    digest = (run.get("data") or {}).get("test_fingerprint")
    return f"{run['dataset']} ({test} test images" + (f", test set {digest[:8]})" if digest else ")")


def groups_of(runs: list[dict]) -> list[list[dict]]:
    """``runs`` in groups of comparable runs (comparable), in the order they come."""
    out: dict[str, list[dict]] = {}
    for run in runs:
        out.setdefault(comparable(run), []).append(run)
    return list(out.values())


def time_to(history: list[dict], target: float) -> tuple[float, int] | None:
    """Cumulative training seconds and epoch at which validation accuracy first reached ``target``."""
    for h in history:
        if h["val_acc"] is not None and h["val_acc"] >= target - 1e-12 and h.get("elapsed_s") is not None:
            return h["elapsed_s"], h["epoch"]
    return None


def training_seconds(history: list[dict]) -> float | None:
    return history[-1].get("elapsed_s") if history else None


def learned(v: TrialView) -> bool:
    """Whether a trial learned: its best validation accuracy is at least a tenth of the way from chance (one over
    the classes) to perfect. A trial at chance would set every time-to-accuracy target to what guessing reaches."""
    chance = 1 / max(len(v.run["classes"]), 1)
    return bool(v.history) and max(h["val_acc"] for h in v.history) >= chance + LEARNED * (1 - chance)


LEARNED = 0.1


def choose_target(views: list[TrialView]) -> float | None:
    """The default time-to-accuracy target: the highest validation accuracy that every completed trial that learned
    reached, floored to a whole percent, so that each of them has a time; never below what chance reaches."""
    bests = [max(h["val_acc"] for h in v.history) for v in views if v.test_rank is not None and learned(v)]
    return math.floor(100 * min(bests)) / 100 if bests else None


def variant_text(v: TrialView) -> str:
    return format_variant(v.trial["variant"]) or "-"


def select_runs(store: Store, refs: tuple[str, ...], all_runs: bool = False) -> list[dict]:
    """The runs named by ``refs`` ('latest', ids or unique prefixes; the latest run when none), or every run."""
    if all_runs:
        runs = store.runs()
        if not runs:
            raise BenchError(f"store {store.path} has no runs yet (start one with `bench run`)")
        return runs
    found = (store.run(None if ref == "latest" else ref) for ref in refs or ("latest",))
    return list({r["id"]: r for r in found}.values())
