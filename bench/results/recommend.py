"""What to ship: for each deployment target measured (an engine on a device), the fastest model at batch 1 whose
test accuracy is within the loss the user accepts (--max-accuracy-drop, in points, counted in test images) of the
most accurate model measured on that target; with the file the engine reads and the command that loads it
(`bench predict`). The report's last section and `bench predict`'s default both come from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from bench.core.formats import device_of, trial_label
from bench.core.status import MeasurementStatus, Precision
from bench.results.deployed import accuracies, representative, too_lossy


@dataclass(frozen=True)
class Choice:
    """The model to ship for one target, and what it was chosen against."""

    engine: str
    device: str  # cpu, cuda, ... (bench.core.formats.device_of)
    run: dict
    trial: dict
    precision: str
    test_acc: float  # through this engine at this precision, on the CPU over the whole test set
    p50_ms: float  # batch 1, the representative repetition
    noisy: bool
    best_acc: float  # the most accurate model measured on this target
    allowed_points: float
    candidates: int  # models measured on this target with a test accuracy
    file: str | None  # what the engine reads, relative to the store's folder

    @property
    def target(self) -> str:
        return f"{self.engine} on {self.device}"

    def command(self) -> str:
        """The command that classifies images with this model."""
        run = self.run.get("name") or self.run["id"]
        device = f" --device {self.device}" if self.device != "cpu" else ""
        return (
            f"bench predict {run} IMAGES... --trial {trial_label(self.trial['idx'])} --engine {self.engine} "
            f"--precision {self.precision}{device}"
        )


def recommend(entries: list, allowed_points: float, test_images: int) -> list[Choice]:
    """One Choice per (engine, device) measured at batch 1 among ``entries`` (each with ``run``, ``trial``,
    ``export``, ``variants``, ``latency`` and ``evaluations``: a report's TrialView), in the order targets were
    first measured."""
    by_target: dict[tuple[str, str], list[tuple]] = {}
    for e in entries:
        accuracy = accuracies(e.trial, e.export, e.variants, e.evaluations)
        for r in representative(e.latency):
            key = (r["engine"], r["precision"])
            if r["status"] != MeasurementStatus.OK or r["batch_size"] != 1 or accuracy.get(key) is None:
                continue
            by_target.setdefault((r["engine"], device_of(r["provider"])), []).append((e, r, accuracy[key]))
    out = []
    for (engine, device), candidates in by_target.items():
        best = max(acc for _, _, acc in candidates)
        within = [
            c
            for c in candidates
            if not too_lossy(round(best * test_images), round(c[2] * test_images), test_images, allowed_points)
        ]
        e, r, acc = min(within, key=lambda c: c[1]["p50_ms"])
        out.append(
            Choice(
                engine=engine,
                device=device,
                run=e.run,
                trial=e.trial,
                precision=r["precision"],
                test_acc=acc,
                p50_ms=r["p50_ms"],
                noisy=bool(r.get("noisy")),
                best_acc=best,
                allowed_points=allowed_points,
                candidates=len(candidates),
                file=file_of(e, engine, r["precision"], r.get("method") or {}),
            )
        )
    return out


def file_of(entry, engine: str, precision: str, method: dict) -> str | None:
    """The file ``engine`` reads for ``precision`` of a trial: its own (an OpenVINO IR, named in its method), the
    ONNX variant or export, or the PyTorch checkpoint."""
    export = (entry.export or {}).get("path")
    if method.get("file") and export:
        return str(PurePosixPath(export).parent / method["file"])
    if engine.startswith("torch"):
        return entry.trial.get("checkpoint")
    variant = next((v for v in entry.variants if v["precision"] == precision and v.get("path")), None)
    if variant is not None:
        return variant["path"]
    return export if precision in (Precision.FP32, Precision.BF16) else None
