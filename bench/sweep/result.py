"""What `bench.run` and `bench.resume` return."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunResult:
    """What a run (or a resume) ended with."""

    run_id: str
    status: str  # completed, interrupted or failed (bench.core.status.RunStatus)
    trials: list[dict]  # every trial's public record (bench.results.records.run_records), in leaderboard order
    trained: list[int] = field(default_factory=list)  # the trials (numbers) this call trained
    deployed: list[int] = field(default_factory=list)  # the trials exported (and benchmarked) by this call
    problems: list[str] = field(default_factory=list)  # what went wrong in export or benchmark, per trial
    store: str = ""  # the results database
    warnings: list[str] = field(
        default_factory=list
    )  # figures not to trust (bench.results.records.noise_warning); trials that could not be deployed, and why
    notes: list[str] = field(default_factory=list)  # what the plan adapted (a plugin's default that did not fit)

    @property
    def best(self) -> dict | None:
        """The leaderboard's first trial (highest validation accuracy among the finished ones)."""
        return next((t for t in self.trials if t["rank"] == 1), None)
