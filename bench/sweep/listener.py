"""What a run tells the code that started it (`bench.run(..., listener=)`): `RunListener`, the methods it calls at
every step, and how the run calls them (a listener that raises stops the run as interrupted and blames no trial)."""

from __future__ import annotations

from bench.core.errors import UsageError
from bench.deploy.steps import DeployResult
from bench.runtime.protocol import BenchSettings
from bench.sweep.estimate import RunEstimate
from bench.sweep.plan import TrialSpec
from bench.train.loop import EpochStats


class RunListener:
    """Told of every step of a run (`bench.run(..., listener=)`): subclass it and override what you need; the
    default does nothing. Raising KeyboardInterrupt from a method stops the run as Ctrl-C does."""

    # before training: the run's planned trials (a search: up to --trials), and its expected cost, deployment included
    def run_estimated(self, run_id: str, estimate: RunEstimate) -> None: ...
    def run_started(self, run_id: str, specs: list[TrialSpec]) -> None: ...
    def trial_started(self, spec: TrialSpec) -> None: ...
    def epoch_done(self, spec: TrialSpec, stats: EpochStats) -> None: ...
    def trial_done(self, spec: TrialSpec, trial: dict) -> None: ...
    def sweep_done(self, run: dict, ranked: list[dict]) -> None: ...  # training over, trials ranked
    # exporting (and benchmarking) winners; settings: how they are timed (None: not benchmarked)
    def deploy_started(self, trials: list[dict], settings: BenchSettings | None) -> None: ...
    # kind: "exported" (payload: the export's row), "quantized" (the variants' rows) or "benchmarked" (latency rows)
    def deploy_event(self, kind: str, trial: dict, payload: dict | list[dict]) -> None: ...
    def deploy_done(self, run: dict, results: list[DeployResult], settings: BenchSettings | None) -> None: ...


LISTENER_METHODS = tuple(name for name in vars(RunListener) if not name.startswith("_"))


class ListenerFailed(Exception):
    """A RunListener method raised: the caller's code failed, not the run. The run stops as interrupted (a resume
    continues it), no trial is blamed, and bench.run / bench.resume raise the listener's own exception."""

    def __init__(self, method: str, error: Exception):
        super().__init__(f"the run's listener raised in {method}: {error.__class__.__name__}: {error}")
        self.error = error


class GuardedListener:
    """``listener`` as the run calls it: a method it lacks does nothing, and an exception from one it has becomes
    ListenerFailed (KeyboardInterrupt stays itself: it stops the run as Ctrl-C does)."""

    def __init__(self, listener):

        if not any(callable(getattr(listener, name, None)) for name in LISTENER_METHODS):
            raise UsageError(
                f"listener {listener!r} has none of bench.RunListener's methods ({', '.join(LISTENER_METHODS)}):"
                " subclass bench.RunListener and override what you need"
            )
        self.listener = listener

    def __getattr__(self, name: str):
        if name not in LISTENER_METHODS:
            raise AttributeError(name)
        method = getattr(self.listener, name, None)
        if not callable(method):
            return lambda *args, **kwargs: None

        def call(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except (KeyboardInterrupt, ListenerFailed):
                raise
            except Exception as exc:
                raise ListenerFailed(name, exc) from exc

        return call


def wants(listener, method: str) -> bool:
    """Whether some listener behind ``listener`` (guarded, or several as one) has its own ``method``, not
    RunListener's default that does nothing: what only a listener needs (a run's estimate) is then worth making."""
    if isinstance(listener, GuardedListener):
        return wants(listener.listener, method)
    if isinstance(listener, Listeners):
        return any(wants(x, method) for x in listener.listeners)
    own = getattr(type(listener), method, None)
    return callable(own) and own is not getattr(RunListener, method, None)


def guarded(listener) -> GuardedListener:
    """The run's listener, guarded (``None``: one that does nothing)."""
    if isinstance(listener, GuardedListener):
        return listener
    return GuardedListener(listener if listener is not None else RunListener())


class Listeners:
    """Several listeners as one: each method calls each listener's in turn."""

    def __init__(self, *listeners):
        self.listeners = [x for x in listeners if x is not None]

    def __getattr__(self, name: str):
        if name not in LISTENER_METHODS:
            raise AttributeError(name)

        def call(*args, **kwargs):
            for listener in self.listeners:
                method = getattr(listener, name, None)
                if callable(method):
                    method(*args, **kwargs)

        return call
