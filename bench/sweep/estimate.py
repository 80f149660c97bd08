"""`bench run --dry-run`: the plan a config makes, with each trial's size and cost, before anything is trained or
stored. The time estimate divides a trial's training FLOPs by the training rate (FLOP/s) that earlier completed
trials in the store measured on this machine (same CPU model and device): those of the same architecture where
there are some (a small net is overhead-bound, its rate far below a big one's), else all of them."""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.core.status import TrialStatus
from bench.options.config import RunConfig

# A training step costs about three forward passes (forward, and a backward pass of about twice its cost).
TRAIN_FLOPS_PER_FORWARD = 3


def dry_run(config: RunConfig, store_path=None) -> dict:
    """The trials ``config`` plans (nothing trained, nothing stored): for each, its architecture, variant and
    hyperparameters, parameters, forward FLOPs per image, training FLOPs, and the estimated training time where
    this machine has a measured rate; with the plan's notes and the rate's origin."""
    from bench.core.machine import cpu_model
    from bench.models.stats import count_flops, count_parameters
    from bench.plugins.dataset_loading import load_dataset
    from bench.sweep.plan import check_plan, plan_run
    from bench.train.device import resolve_device

    notes: list[str] = []
    specs = plan_run(config, notes)
    if config.search == "tpe" and config.trials < len(specs):
        notes.append(
            f"--search tpe trains {config.trials} of these {len(specs)} combinations, each chosen from the results "
            "before it"
        )
    data = load_dataset(config.dataset, download=config.download, **config.data_options())
    check_plan(specs, data)
    device = resolve_device(config.device)
    rates, measured_on = _rates(store_path, cpu_model(), device.type)
    rows = []
    for spec in specs:
        hp = spec.hparams
        model = spec.architecture.build(data.input_shape, data.num_classes, spec.variant)
        flops = count_flops(model, data.input_shape)
        train = data.split(hp.val_ratio, hp.seed).sizes()["train"]
        total = TRAIN_FLOPS_PER_FORWARD * flops * train * hp.epochs
        own = rates.get(spec.architecture.name) or [r for rs in rates.values() for r in rs]
        rate = statistics.median(own) if own else None
        rows.append(
            {
                "trial": spec.idx,
                "architecture": spec.architecture.name,
                "variant": spec.variant,
                "hparams": hp.as_dict(),
                "params": count_parameters(model),
                "flops": flops,
                "train_images": train,
                "train_flops": total,
                "estimated_s": total / rate if rate else None,
                "rate_of": None if not rate else "architecture" if spec.architecture.name in rates else "all",
            }
        )
    return {
        "dataset": data.name,
        "input_shape": list(data.input_shape),
        "trials": rows,
        "notes": notes,
        "rates_from": measured_on,
    }


def _rates(store_path, cpu: str, device: str) -> tuple[dict[str, list[float]], str | None]:
    """The training rates (FLOP/s) of the completed trials of the store measured on ``cpu`` and ``device``, by
    architecture, and where they came from; ({}, None) when there is no store or no such trial. Only reads."""
    from bench.store import Store, default_path

    path = Path(store_path) if store_path is not None else default_path()
    if not path.is_file():
        return {}, None
    rates: dict[str, list[float]] = {}
    with Store(path, readonly=True) as store:
        for run in store.runs():
            env = run["environment"] or {}
            if env.get("cpu") != cpu or str(env.get("device", "cpu")).split(":")[0] != device:
                continue
            for trial in store.trials(run["id"]):
                history = store.history(trial["id"]) if trial["status"] == TrialStatus.COMPLETED else []
                seconds = history[-1]["elapsed_s"] if history else None
                train = (trial["split"] or {}).get("train")
                if seconds and train and trial["flops"]:
                    rate = TRAIN_FLOPS_PER_FORWARD * trial["flops"] * train * len(history) / seconds
                    rates.setdefault(trial["architecture"], []).append(rate)
    n = sum(map(len, rates.values()))
    return (rates, f"{n} completed trials in {path} on {cpu} ({device})") if n else ({}, None)
