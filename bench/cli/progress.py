"""What `bench run` shows as it goes (a RunListener): a bar for the trials and one for the epochs of each running
trial, a line per trial, then the leaderboard and the deployment tables."""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.cli.tables import (
    configurations_table,
    inference_table,
    leaderboard_table,
    rich_table,
    run_title,
    short_variant,
    variants_table,
    varying,
)
from bench.core.formats import duration, pct, trial_label
from bench.core.status import ExportStatus, TrialStatus
from bench.deploy.steps import DeployResult
from bench.results.leaderboard import configurations, repeated
from bench.results.serving import method_text as serving_method
from bench.results.serving import serving_columns, serving_targets
from bench.results.tables import swept, swept_text
from bench.sweep.estimate import RunEstimate
from bench.sweep.listener import RunListener
from bench.sweep.plan import TrialSpec
from bench.train.loop import EpochStats


class RichDisplay(RunListener):
    """What `bench run` shows: a bar for the trials and one for the epochs of each running trial, a line per trial,
    the leaderboard and the deployment tables."""

    def __init__(self, console: Console):
        self.console = console
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.trials_task = None
        self.epochs_tasks: dict[int, int] = {}  # trial idx -> its epochs bar (trials may run side by side)
        self.total = self.done = 0
        self.name: str | None = None  # the run's name (bench run --name), shown beside its id
        self.estimate: RunEstimate | None = None  # the run's expected size and cost (run_estimated)
        self.durations: list[float] = []  # of the trials this process trained
        self.seen: list[dict] = []  # the hyperparameters of the trials planned (a search: chosen so far)
        self.swept: list[str] = []  # those of them that vary, beside optimizer, lr and batch (shown on each line)
        self.keys: dict[str, set[str]] = {}
        self.status = None  # the spinner while winners are exported and benchmarked
        self.tables: Console | None = None  # where the leaderboard and the deployment table go (none: not shown)

    def __enter__(self):
        return self  # the bars start with the first trial: an error before it prints only itself

    def __exit__(self, *exc):
        if self.bar.live.is_started:
            self.bar.stop()
        if self.status is not None:
            self.status.stop()

    def run_estimated(self, run_id: str, estimate: RunEstimate) -> None:
        self.estimate = estimate

    def run_started(self, run_id: str, specs: list[TrialSpec]) -> None:
        estimate = self.estimate or RunEstimate(trials=len(specs))
        self.total, self.done = estimate.trials, estimate.done
        self.keys = varying([{"architecture": s.architecture.name, "variant": s.variant} for s in specs])
        self.seen = [s.hparams.as_dict() for s in specs]  # a search's: those it chose so far
        self.swept = swept(self.seen, dict)
        upto = "up to " if estimate.searching else ""
        ended = f", {self.done} already ended" if self.done else ""
        named = f" ({escape(self.name)})" if self.name else ""
        self.console.print(f"Run [bold]{run_id}[/]{named}: {upto}{self.total} trial{'s' * (self.total != 1)}{ended}")
        if self.estimate is not None:
            self.console.print(f"Estimate: {self.estimate.describe()}", highlight=False)
        self.trials_task = self.bar.add_task(self._trials_text(), total=self.total, completed=self.done)
        self.bar.start()

    def _trials_text(self) -> str:
        """The trials bar's label, with the time left: the trials still to train at the mean of those this process
        trained (before the first: the estimate's), and the deployment's estimate."""
        left = self.total - self.done
        if self.durations:
            train = statistics.mean(self.durations) * left
        elif self.estimate is not None and self.estimate.train_s is not None:
            train = self.estimate.train_s
        else:
            return "trials"
        deploy = self.estimate.deploy_s if self.estimate is not None else None
        if self.estimate is not None and self.estimate.winners and deploy is None:
            return f"trials, about {duration(train)} of training left, then deployment"
        return f"trials, about {duration(train + (deploy or 0))} left"

    def trial_started(self, spec: TrialSpec) -> None:
        if self.estimate is not None and self.estimate.searching:
            self.seen.append(spec.hparams.as_dict())
            self.swept = swept(self.seen, dict)
        self.epochs_tasks[spec.idx] = self.bar.add_task(
            f"{trial_label(spec.idx)} {spec.architecture.name} epochs", total=spec.hparams.epochs
        )

    def epoch_done(self, spec: TrialSpec, stats: EpochStats) -> None:
        if spec.idx in self.epochs_tasks:
            self.bar.update(
                self.epochs_tasks[spec.idx],
                advance=1,
                description=f"{trial_label(spec.idx)} {spec.architecture.name} val acc {pct(stats.val_acc)}%",
            )

    def trial_done(self, spec: TrialSpec, trial: dict) -> None:
        if spec.idx in self.epochs_tasks:
            self.bar.remove_task(self.epochs_tasks.pop(spec.idx))
        self.done += 1
        if trial.get("duration_s"):
            self.durations.append(trial["duration_s"])
        self.bar.update(self.trials_task, advance=1, description=self._trials_text())
        hp = spec.hparams
        marks = {
            TrialStatus.COMPLETED: "[green]✓[/]",
            TrialStatus.EARLY_STOPPED: "[green]✓[/]",
            TrialStatus.PRUNED: "[yellow]-[/]",
            TrialStatus.DIVERGED: "[yellow]![/]",
        }
        mark = marks.get(trial["status"], "[red]✗[/]")
        figures = (
            f"val {pct(trial['val_acc'])}% test {pct(trial['test_acc'])}% best epoch {trial['best_epoch']}"
            if trial["val_acc"] is not None
            else trial.get("note") or trial["status"]
        )
        self.console.print(
            f"{mark} {trial_label(spec.idx)}/{self.total} {spec.architecture.name} "
            f"{short_variant({'variant': spec.variant}, self.keys.get(spec.architecture.name, set()))} "
            f"{hp.optimizer} lr={hp.lr:g} batch={hp.batch_size}{self._swept(hp)}: {trial['status']}, {figures} "
            f"({duration(trial['duration_s'])})",
            highlight=False,
        )

    def _swept(self, hp) -> str:
        text = swept_text(hp.as_dict(), self.swept)
        return f" {text}" if text else ""

    def sweep_done(self, run: dict, ranked: list[dict]) -> None:
        if self.bar.live.is_started:
            self.bar.stop()
        if not self.tables:
            return
        configs = configurations(ranked)
        if repeated(configs):  # seeds repeat configurations: one row each, mean ± std
            self.tables.print(
                configurations_table(
                    configs,
                    run_title(run).replace("ranked by validation accuracy", "ranked by mean validation accuracy"),
                )
            )
        else:
            self.tables.print(leaderboard_table(ranked, run_title(run)))

    def deploy_started(self, trials: list[dict], settings) -> None:
        what = "exporting and benchmarking" if settings else "exporting"
        deploy = self.estimate.deploy_s if self.estimate is not None else None
        self.status = self.console.status(what + (f", about {duration(deploy)}" if deploy is not None else ""))
        self.status.start()

    def deploy_event(self, kind: str, trial: dict, payload) -> None:
        name = f"{trial_label(trial['idx'])} {trial['architecture']}"
        if kind == "quantized":
            for v in payload:
                acc = f"test acc {pct(v['test_acc'])}%, " if v["test_acc"] is not None else ""
                self.console.print(f"{v['precision']} {name}: {v['status']}, {acc}{v['note'] or ''}".rstrip(", "))
        elif kind != "exported":
            self.console.print(f"Benchmarked {name}: {len(payload)} measurements")
        elif payload["status"] != ExportStatus.OK:
            self.console.print(f"ONNX {name}: {payload['status']}, {payload['note']}")
        else:
            self.console.print(
                f"ONNX {name}: ok, max |Δ| {payload['max_abs_diff']:.1e}, "
                f"ONNX test acc {100 * payload['onnx_test_acc']:.2f}%"
            )

    def deploy_done(self, run: dict, results: list[DeployResult], settings) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.tables:
            what = " and inference benchmark" if settings else ""
            self.tables.print(inference_table(results, f"Run {run['id']}: ONNX export{what}"))
            if any(r.variants for r in results):
                self.tables.print(variants_table(results, f"Run {run['id']}: int8 and fp16 variants"))
            if any(r.serving for r in results):
                self.tables.print(serving_table(results, f"Run {run['id']}: serving scenarios"))


def serving_table(results: list, title: str):
    """One row per (trial, engine, device, precision): its serving scenarios (bench.results.serving)."""
    rows = [{**t, "trial": r.trial} for r in results for t in serving_targets(r.serving)]
    for i, row in enumerate(rows):
        row["head"] = i == 0 or rows[i - 1]["trial"]["id"] != row["trial"]["id"]
    columns = serving_columns(rows, lambda t: trial_label(t["trial"]["idx"]) if t["head"] else "")
    return rich_table(columns, rows, title, escape(serving_method(rows)), wrap=False)
