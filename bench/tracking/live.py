"""A run logged to a tracking tool as it goes (`bench run --track mlflow`): each trial is sent when it ends, the whole
run (winners' files and figures, the report) when the call ends. A tracking failure never stops the run: it is said
once in the run's notes, tracking stops, and `bench mlflow RUN` sends the run later (the store has everything)."""

from __future__ import annotations

from bench.core.errors import BenchError


class TrackingListener:
    """Sends each trial of the run to MLflow as it ends (bench.tracking.mlflow.Tracker). A listener of the run: of
    bench.sweep.listener.RunListener's methods, it has the two it needs (run_started, trial_done), and ``finish``."""

    def __init__(self, store, config):
        from bench.tracking.mlflow import Tracker, default_uri

        self.store = store
        self.tracker = Tracker(config.tracking_uri or default_uri(store.path), config.experiment)
        self.run_id: str | None = None
        self.problem: str | None = None
        self.sent = None  # what the last send said (bench.tracking.mlflow.Sent)

    def _send(self, **how) -> None:
        if self.problem is not None or self.run_id is None:
            return
        try:
            self.sent = self.tracker.send(self.store, self.run_id, **how)
        except BenchError as exc:
            self.problem = str(exc)

    def run_started(self, run_id, specs) -> None:
        self.run_id = run_id

    def trial_done(self, spec, trial) -> None:
        self._send(only={spec.idx}, report=False)

    def finish(self, run_id: str) -> list[str]:
        """Send the whole run as it stands; the note to show: where it went, or why tracking stopped."""
        self.run_id = self.run_id or run_id
        self._send()
        if self.problem is None:
            s = self.sent
            if s is None:
                return []
            return [f"run {s.run} is MLflow run {s.mlflow_run} (experiment '{s.experiment}', {s.uri}): open {s.link}"]
        return [f"tracking stopped ({self.problem}); nothing is lost: `bench mlflow {self.run_id}` sends the run later"]


def tracking(store, config) -> TrackingListener | None:
    """The tracking listener ``config`` asks for (--track), or None."""
    return TrackingListener(store, config) if "mlflow" in config.track else None
