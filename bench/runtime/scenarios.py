"""Serving scenarios in the manner of MLPerf Inference's LoadGen, on one engine session (bench.runtime.engines):

- single-stream: one query (one image) at a time, the next sent when the last returns; latency percentiles stated
  only with enough queries behind them (bench.results.percentiles).
- offline: the test images as fast as the engine takes them, in batches of the size cnnbench found fastest in a short
  probe (recorded): images/s.
- server: queries arrive at random (a Poisson process) at a given rate and wait in a queue for one of N workers (threads
  sharing the session, each with its own bound inputs); a query's latency runs from its *scheduled* arrival to its
  answer, so queueing counts. With dynamic batching, a worker that takes a query also takes those that arrive within
  a maximum wait, up to k, in one call. The result is the largest rate whose p99 (the early-stopping estimate) stays
  under the latency bound, found by bracketing then bisecting to RESOLUTION, with the p99 there and the rate just
  above that failed. A rate passes when the early-stopping estimate of its p99 is within the bound, and fails as
  soon as enough queries are over the bound for that estimate to be over it too (LoadGen's early stopping), so an
  overloaded rate costs little time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from bench.core.noise import Watch
from bench.options.choices import SCENARIOS
from bench.results.percentiles import allowed_over, estimates
from bench.runtime.protocol import batch_of

SINGLE_STREAM, OFFLINE, SERVER = SCENARIOS
OFFLINE_BATCHES = (16, 64, 256)  # probed for the offline pass: the fastest in images/s is used
OFFLINE_MAX_BYTES = 512 * 2**20  # float32 inputs of one offline pass, at most (the test set's first images)
RESOLUTION = 0.05  # the max-QPS search stops when the failing rate is within 5% of the passing one
MAX_PROBES = 14  # rates tried per search, at most
SEED = 0  # of the arrival times: every engine and precision gets the same queries at the same rate


@dataclass(frozen=True)
class ServerConfig:
    """How the server answers: ``workers`` threads sharing one session; dynamic batching when ``max_batch`` > 1."""

    workers: int = 1
    max_batch: int = 1
    max_wait_ms: float = 0.0

    def label(self) -> str:
        out = f"{self.workers} worker{'s' * (self.workers > 1)}"
        if self.max_batch > 1:
            out += f", batches <= {self.max_batch}, wait {self.max_wait_ms:g} ms"
        return out

    def as_dict(self) -> dict:
        return asdict(self)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


def single_stream(
    session, images, queries: int, min_time: float, warmup: int, threads: int, sync: Callable = lambda: None
) -> dict:
    """One image at a time, at least ``queries`` of them and ``min_time`` seconds, after ``warmup`` untimed ones."""
    run = session.bind(batch_of(images, 1).cpu().numpy().astype(np.float32))
    for _ in range(warmup):
        run()
    sync()
    samples: list[float] = []
    with Watch(threads) as watch:
        start = time.perf_counter()
        while len(samples) < queries or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            run()
            sync()
            samples.append((time.perf_counter() - t0) * 1000)
        total = time.perf_counter() - start
    return {
        "queries": len(samples),
        "seconds": round(total, 3),
        **estimates(samples),
        "mean_ms": round(float(np.mean(samples)), 4),
        "max_ms": round(float(np.max(samples)), 4),
        "qps": round(len(samples) / total, 2),
        **watch.window.as_dict(),
        "noisy": watch.window.noisy(),
    }


def offline(session, images, threads: int, sync: Callable = lambda: None) -> dict:
    """The test images (as many as OFFLINE_MAX_BYTES of float32 hold) in one pass at the fastest batch size of
    OFFLINE_BATCHES (each probed for 3 runs after 2 warm-up runs)."""
    per_image = 4 * int(np.prod(images[:1].shape[1:]))
    count = int(min(len(images), max(1, OFFLINE_MAX_BYTES // per_image)))
    probed = {}
    for b in (b for b in OFFLINE_BATCHES if b <= max(count, OFFLINE_BATCHES[0])):
        run = session.bind(batch_of(images, b).cpu().numpy().astype(np.float32))
        for _ in range(2):
            run()
        sync()
        t0 = time.perf_counter()
        for _ in range(3):
            run()
        sync()
        probed[b] = round(3 * b / (time.perf_counter() - t0), 1)
    batch = max(probed, key=probed.get)
    runs = [
        session.bind(np.ascontiguousarray(np.asarray(images[i : min(i + batch, count)], dtype=np.float32)))
        for i in range(0, count, batch)
    ]
    runs[0]()
    runs[-1]()  # a last, smaller batch is a new shape: its first call plans memory, untimed
    sync()
    with Watch(threads) as watch:
        t0 = time.perf_counter()
        for run in runs:
            run()
        sync()
        total = time.perf_counter() - t0
    return {
        "images": count,
        "batch_size": batch,
        "seconds": round(total, 3),
        "throughput": round(count / total, 1),
        "batch_probe": probed,
        **watch.window.as_dict(),
        "noisy": watch.window.noisy(),
    }


def _wait_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def server_rate(
    runners: list[dict[int, Callable]],
    config: ServerConfig,
    rate: float,
    queries: int,
    bound_ms: float,
    sync: Callable = lambda: None,
    seed: int = SEED,
) -> dict:
    """``queries`` Poisson arrivals at ``rate`` per second answered by ``config.workers`` workers (``runners[w]``: batch
    size -> that worker's bound call); whether their p99 stays under ``bound_ms`` (stopped early once it cannot)."""
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1 / rate, queries)).tolist()
    latency: list[float | None] = [None] * queries  # plain lists: the per-query overhead is counted in the latency
    allowed = allowed_over(queries, 99)
    wait = config.max_wait_ms / 1000
    lock = threading.Lock()
    state = {"next": 0, "over": 0, "stop": False, "last": 0.0}
    start = time.perf_counter() + 0.01

    def claim_more(members: list[int]) -> None:
        """Dynamic batching: the queries that have arrived since, up to max_batch, join the first one's call."""
        first = members[0]
        last = min(first + config.max_batch - 1, queries - 1)
        _wait_until(start + min(arrivals[first] + wait, arrivals[last]))
        with lock:
            now = time.perf_counter() - start
            while state["next"] < queries and len(members) < config.max_batch and arrivals[state["next"]] <= now:
                members.append(state["next"])
                state["next"] += 1

    def worker(runs: dict[int, Callable]) -> None:
        while True:
            with lock:
                if state["stop"] or state["next"] >= queries:
                    return
                i = state["next"]
                state["next"] += 1
            _wait_until(start + arrivals[i])
            members = [i]
            if config.max_batch > 1:
                claim_more(members)
            runs[len(members)]()
            sync()
            done = time.perf_counter() - start
            with lock:
                for j in members:
                    latency[j] = ms = (done - arrivals[j]) * 1000
                    state["over"] += ms > bound_ms
                state["last"] = max(state["last"], done)
                if state["over"] >= allowed:
                    state["stop"] = True  # its p99 estimate is over the bound already: LoadGen's early stopping

    threads = [threading.Thread(target=worker, args=(runs,), daemon=True) for runs in runners[1 : config.workers]]
    for t in threads:
        t.start()
    worker(runners[0])
    for t in threads:
        t.join()
    answered = [x for x in latency if x is not None]
    stopped = state["stop"] or len(answered) < queries
    row = {
        "rate": round(rate, 2),
        "queries": queries,
        "answered": len(answered),
        "over_bound": state["over"],
        "allowed_over": allowed,
        "passed": not stopped and state["over"] < allowed,  # the p99 estimate (the allowed-th largest) is in
        "stopped_early": stopped,
        "achieved_qps": round(len(answered) / state["last"], 2) if state["last"] else None,
    }
    stats = estimates(answered) if not stopped else {}
    row.update({k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()})
    return row


def server(
    runners: list[dict[int, Callable]],
    config: ServerConfig,
    bound_ms: float,
    queries: int,
    capacity_guess: float,
    sync: Callable = lambda: None,
    threads: int = 1,
    min_time: float = 0.0,
) -> dict:
    """The largest Poisson rate (queries/s) whose p99 stays under ``bound_ms``: rates from half of ``capacity_guess``
    up by 1.6x (or down by half) until one passes and one fails, then bisected until they are within RESOLUTION.
    Each rate sends ``queries`` queries, or more to last ``min_time`` seconds: a rate a little above what the server
    can take builds its queue slowly, and a short try would pass it."""
    rates: list[dict] = []

    def passes(rate: float) -> bool:
        count = max(queries, math.ceil(rate * min_time))
        rates.append(server_rate(runners, config, rate, count, bound_ms, sync))
        return rates[-1]["passed"]

    lo = hi = None
    rate = max(capacity_guess * 0.5, 1e-3)
    with Watch(threads * config.workers) as watch:
        while (lo is None or hi is None) and len(rates) < MAX_PROBES:
            if passes(rate):
                lo, rate = rate, rate * 1.6
            else:
                hi, rate = rate, rate / 2
            if lo is None and hi is not None and queries / rate > 60:
                break  # the bound is not met even at a rate that takes a minute per try
        while lo is not None and hi is not None and hi / lo - 1 > RESOLUTION and len(rates) < MAX_PROBES:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if passes(mid) else (lo, mid)
    at = {r["rate"]: r for r in rates}
    best = at.get(round(lo, 2)) if lo is not None else None
    failed = at.get(round(hi, 2)) if hi is not None else None
    return {
        "bound_ms": bound_ms,
        **config.as_dict(),
        "max_qps": best["rate"] if best else None,
        "p99_ms": best.get("p99_ms") if best else None,
        "p50_ms": best.get("p50_ms") if best else None,
        "failed_qps": failed["rate"] if failed else None,
        "failed_over_bound": f"{failed['over_bound']} of {failed['answered']}" if failed else None,
        "rates": sorted(rates, key=lambda r: r["rate"]),
        **watch.window.as_dict(),
        "noisy": watch.window.noisy(),
    }
