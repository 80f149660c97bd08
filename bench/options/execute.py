"""Where and how the trials run (a resume may change these): the executor, the device, threads, checkpoints
within epochs, Ray's own options and tracking."""

from __future__ import annotations

from dataclasses import dataclass

from bench.options.choices import EXECUTE, EXECUTORS, SCHEDULERS, TRACKERS
from bench.options.option import POSITIVE, declare


@dataclass
class ExecuteOptions:
    """Where the trials run: RunConfig (bench.options.config) is made of these fields and the other stages'."""

    download: bool = declare(EXECUTE, "Download the dataset's files into --data-dir when missing.", False, kind=bool)
    cache_dir: str | None = declare(
        EXECUTE,
        "Where decoded datasets are kept (default $BENCH_CACHE, else ~/.cache/cnnbench): decoded once, in parallel, "
        "again when a source file changes; never inside the dataset's folder unless given.",
        loads_data=True,
    )
    executor: str = declare(
        EXECUTE,
        "local: trial after trial in this process; ray: Ray Tune trials (pip install 'cnnbench[ray]').",
        "local",
        choices=EXECUTORS,
    )
    device: str = declare(
        EXECUTE,
        "auto, cpu, cuda or cuda:N (local executor).",
        "auto",
        pattern=r"auto|cpu|cuda(:[0-9]+)?",
        pattern_text="auto, cpu, cuda or cuda:N",
    )
    threads: int | None = declare(
        EXECUTE,
        "CPU threads for torch, at most this machine's CPU count (default: torch's choice).",
        kind=int,
        low=1,
        machine_bound=True,
    )
    state_every: float = declare(
        EXECUTE,
        "Also save an unfinished trial's training state within an epoch, every this many seconds (0: after each epoch "
        "only): a stop then loses at most that much of a long epoch, and --resume continues from that step.",
        300.0,
        kind=float,
        low=0,
    )
    ray_address: str | None = declare(
        EXECUTE, "With --executor ray: an existing cluster (default: start a local Ray).", ray_only=True
    )
    cpus_per_trial: float = declare(
        EXECUTE,
        "With --executor ray: CPUs (and torch threads) per trial.",
        1.0,
        kind=float,
        **POSITIVE,
        ray_only=True,
    )
    gpus_per_trial: float = declare(
        EXECUTE, "With --executor ray: GPUs per trial.", 0.0, kind=float, low=0, ray_only=True
    )
    storage: str | None = declare(
        EXECUTE,
        "With --executor ray: where trials put checkpoints, reachable by every node "
        "(a shared directory or a URI Ray accepts; default: <store dir>/ray).",
        ray_only=True,
    )
    scheduler: str = declare(
        EXECUTE,
        "With --executor ray: asha stops weak trials early (recorded as pruned).",
        "fifo",
        choices=SCHEDULERS,
        ray_only=True,
    )
    track: list[str] = declare(
        EXECUTE,
        "Also log the run to a tracking tool as its trials finish: mlflow (pip install 'cnnbench[mlflow]'); none.",
        factory=list,
        many=True,
        choices=TRACKERS,
        empty="none",
        docs="A tracking failure never stops the run: it is said once, and `bench mlflow RUN` sends the run later.",
    )
    tracking_uri: str | None = declare(
        EXECUTE,
        "With --track mlflow: the MLflow tracking URI (default $MLFLOW_TRACKING_URI, else sqlite:///<store dir>/"
        "mlflow.db).",
    )
    experiment: str = declare(EXECUTE, "With --track mlflow: the MLflow experiment.", "cnnbench")
