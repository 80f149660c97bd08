"""Serving figures (issue 37), quiet and beside competitors that each loop 2-thread torch work (benchmarks/load.py's).

python benchmarks/serving.py threads [--model cnn_vgg] [--competitors 2]
    each engine thread setting (onnxruntime's idle intra-op threads spinning or sleeping, OpenVINO pinning its
    threads to cores or not; PyTorch eager with cnnbench's own OpenMP setting as the reference), in a fresh
    process each, on the model's seeded random weights (latency does not depend on them): single-stream p50/p99
    (1,024 queries, early-stopping estimates) and the server's max QPS under a 10 ms p99 bound; section
    "Serving: engine threads under load".
python benchmarks/serving.py winners --store S RUN [RUN...] [--bound-ms 10] [--competitors 2]
        [--loaded-bound-ms B] [--loaded-engines onnxruntime,openvino]
    `bench benchmark RUN --scenario single-stream,offline,server` on each run's winner, every engine and
    precision, quiet then loaded (beside the competitors: those engines, that bound); section "Serving".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from record import cpu_name, record

BENCH = str(Path(sys.executable).parent / "bench")
ENGINES = os.environ.get("SERVING_ENGINES", "onnxruntime,torch,openvino")  # winners: the engines measured
COMPETITOR = """
import torch
torch.set_num_threads(2)
a, b = torch.randn(512, 512), torch.randn(512, 512)
while True:
    a @ b
"""
# engine -> setting name -> the BenchSettings fields it sets
THREAD_SETTINGS = {
    "onnxruntime": {"spin": {"ort_spinning": "on"}, "sleep": {"ort_spinning": "off"}},
    "openvino": {"pinned": {"openvino_pinning": "on"}, "unpinned": {"openvino_pinning": "off"}},
    "torch": {"cnnbench": {}},
}
ONE = """
import json, sys, tempfile
from pathlib import Path
import torch
from bench.deploy.export import export_model
from bench.plugins.manager import get_plugins
from bench.runtime import scenarios
from bench.runtime.engines import EngineModel
from bench.runtime.protocol import BenchSettings
model_name, engine, fields, bound = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4])
threads = torch.get_num_threads()
torch.manual_seed(0)
plugins = get_plugins()
arch = plugins.registry.get(model_name)
shape = (3, 32, 32)
model = arch.build(shape, 10, arch.variants()[0]).eval()
images = torch.randn(256, *shape, generator=torch.Generator().manual_seed(0))
with tempfile.TemporaryDirectory() as tmp:
    result = export_model(model, shape, {}, images[:8], 1e-3, 18, "torchscript")
    path = Path(tmp) / "model.onnx"
    path.write_bytes(result.data)
    entry = plugins.engines.select([engine])[0]
    em = EngineModel(path, {"fp32": path}, model, shape, None, Path(tmp))
    settings = BenchSettings(graph_optimization="all", **fields)
    session = entry.engine.load(em, "cpu", "fp32", threads, settings, images[:1].numpy())
    single = scenarios.single_stream(session, images, 1024, 1.0, 10, threads, getattr(session, "sync", lambda: None))
    runners = [{1: session.bind(images[:1].numpy())}]
    for _ in range(10):
        runners[0][1]()
    guess = 1000 / single["mean_ms"]
    server = scenarios.server(runners, scenarios.ServerConfig(), bound, 1024, guess, threads=threads, min_time=1.0)
    server.pop("rates")
    method = getattr(session, "method", {})
    print(json.dumps({"single": single, "server": server, "method": method}, default=str))
"""


class Competitors:
    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", COMPETITOR]) for _ in range(self.n)]
        time.sleep(3)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def one(model: str, engine: str, fields: dict, bound: float) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", ONE, model, engine, json.dumps(fields), str(bound)],
        check=True,
        capture_output=True,
        text=True,
        cwd="/tmp",
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def threads(args) -> None:
    cases = [(e, name, fields) for e, named in THREAD_SETTINGS.items() for name, fields in named.items()]
    quiet = {(e, n): one(args.model, e, f, args.bound_ms) for e, n, f in cases}
    print("quiet:", json.dumps({f"{e} {n}": v for (e, n), v in quiet.items()}), flush=True)
    with Competitors(args.competitors):
        load = os.getloadavg()[0]
        loaded = {(e, n): one(args.model, e, f, args.bound_ms) for e, n, f in cases}
    print("loaded:", json.dumps({f"{e} {n}": v for (e, n), v in loaded.items()}), flush=True)
    rows = []
    for e, n, f in cases:
        q, ld = quiet[(e, n)], loaded[(e, n)]
        cells = [f"{e}", f"`{n}`" + (f" ({', '.join(f'{k}={v}' for k, v in f.items())})" if f else "")]
        for part in (q, ld):
            s = part["single"]
            cells.append(f"{_ms(s['p50_ms'])} / {_ms(s['p99_ms'])}")
        for part in (q, ld):
            cells.append(_qps(part["server"]))
        cells.append(f"{ld['single']['others_cpu']}")
        rows.append("| " + " | ".join(cells) + " |")
    import onnxruntime
    import openvino
    import torch

    section = "\n".join(
        [
            "## Serving: engine threads under load",
            "",
            f"`python benchmarks/serving.py threads --model {args.model} --competitors {args.competitors}` on "
            f"{os.cpu_count()} cores of {cpu_name()}; torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}, openvino {openvino.__version__}. {args.model} with seeded random weights "
            f"(3x32x32, fp32), {torch.get_num_threads()} intra-op threads, each setting in a fresh process: "
            "single-stream 1,024 queries (p50 / p99 in ms: early-stopping estimates), then the server scenario (1 "
            "worker, Poisson arrivals, at least 1,024 queries and 1 s per rate): max QPS with p99 <= "
            f"{args.bound_ms:g} ms. Quiet first, then beside {args.competitors} processes each looping 2-thread "
            f"torch matrix products (1-minute load {load:.1f}).",
            "",
            "| engine | setting | single-stream quiet | single-stream loaded | max QPS quiet | max QPS loaded | "
            "others_cpu loaded |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            *rows,
        ]
    )
    record("Serving: engine threads under load", section)
    print(section)


def _ms(x) -> str:
    return "needs more" if x is None else f"{x:.2f}"


def _qps(server: dict) -> str:
    if server.get("max_qps") is None:
        return "bound not met"
    return f"{server['max_qps']:,.0f} (p99 {server['p99_ms']:.2f})"


def _serving(store: str, run: str, bound: float, engines: str, label: str) -> list[dict]:
    args = [BENCH, "benchmark", run, "--store", store, "--scenario", "single-stream,offline,server"]
    args += ["--latency-bound-ms", str(bound), "--engines", engines, "--batch-sizes", "1"]
    subprocess.run(args, check=True, capture_output=True)
    out = subprocess.run(
        [BENCH, "report", run, "--store", store, "--serving", "--json"], check=True, capture_output=True, text=True
    ).stdout
    rows = [r for r in json.loads(out) if r["engine"] in engines.split(",")]
    print(f"{label} {run}:", json.dumps(rows), flush=True)  # kept in the log should a later part be stopped
    return rows


def winners(args) -> None:
    quiet = {run: _serving(args.store, run, args.bound_ms, ENGINES, "quiet") for run in args.runs}
    with Competitors(args.competitors):
        load = os.getloadavg()[0]
        loaded = {
            run: _serving(args.store, run, args.loaded_bound_ms, args.loaded_engines, "loaded") for run in args.runs
        }
    out = subprocess.run(
        [BENCH, "report", *args.runs, "--store", args.store, "--json", "--measurements"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    accuracy = {(m["run"], m["trial"], m["engine"], m["precision"]): m["test_acc"] for m in json.loads(out)}
    rows = []
    for run in args.runs:
        keys = []
        for r in quiet[run]:
            key = (r["trial"], r["architecture"], r["engine"], r["provider"], r["precision"])
            if key not in keys:
                keys.append(key)
        for key in keys:
            q = {
                r["scenario"]: r
                for r in quiet[run]
                if (r["trial"], r["architecture"], r["engine"], r["provider"], r["precision"]) == key
            }
            ld = {
                r["scenario"]: r
                for r in loaded[run]
                if (r["trial"], r["architecture"], r["engine"], r["provider"], r["precision"]) == key
            }
            acc = accuracy.get((quiet[run][0]["run"], key[0], key[2], key[4]))  # the run's id (RUN may be its name)
            rows.append(
                f"| {key[1]} | {key[2]} | {key[4]} | {'-' if acc is None else f'{100 * acc:.2f}'} | "
                f"{_single(q)} | {_single(ld)} | {_offline(q)} | {_server(q)} | {_server(ld)} |"
            )
    import onnxruntime
    import torch

    section = "\n".join(
        [
            "## Serving",
            "",
            f"`python benchmarks/serving.py winners --store {args.store} {' '.join(args.runs)} --bound-ms "
            f"{args.bound_ms:g} --competitors {args.competitors} --loaded-bound-ms {args.loaded_bound_ms:g} "
            f"--loaded-engines {args.loaded_engines}` on {os.cpu_count()} cores of {cpu_name()}; torch "
            f"{torch.__version__}, onnxruntime {onnxruntime.__version__}. Each run's winner, every engine and "
            "precision: `bench benchmark RUN --scenario single-stream,offline,server --latency-bound-ms "
            f"{args.bound_ms:g}` (1,024 single-stream queries after 10 warm-up, p50 / p99 early-stopping estimates in "
            "ms; offline: the test images at the batch a probe found fastest; server: 1 worker, Poisson arrivals, at "
            f"least 1,024 queries and 1 s per rate, the most queries/s with p99 <= {args.bound_ms:g} ms and the p99 "
            f"there). Quiet, then beside {args.competitors} processes each looping 2-thread torch matrix products "
            f"(1-minute load {load:.1f}; engines {args.loaded_engines}, p99 bound {args.loaded_bound_ms:g} ms). Test "
            "accuracy: through that engine at that precision.",
            "",
            "| model | engine | precision | test % | single-stream quiet | single-stream loaded | offline img/s | "
            "max QPS quiet | max QPS loaded |",
            "| --- | --- | --- | ---: | --- | --- | ---: | --- | --- |",
            *rows,
        ]
    )
    record("Serving", section)
    print(section)


def _single(rows: dict) -> str:
    r = rows.get("single-stream")
    if not r or r["status"] != "ok":
        return r["status"] if r else "-"
    return f"{_ms(r['p50_ms'])} / {_ms(r['p99_ms'])}"


def _offline(rows: dict) -> str:
    r = rows.get("offline")
    return f"{r['throughput']:,.0f} (b{r['batch_size']})" if r and r["status"] == "ok" else "-"


def _server(rows: dict) -> str:
    r = rows.get("server")
    if not r or r["status"] != "ok":
        return r["status"] if r else "-"
    return _qps(r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("threads")
    t.add_argument("--model", default="cnn_vgg")
    t.add_argument("--competitors", type=int, default=2)
    t.add_argument("--bound-ms", type=float, default=10.0)
    w = sub.add_parser("winners")
    w.add_argument("--store", required=True)
    w.add_argument("runs", nargs="+")
    w.add_argument("--competitors", type=int, default=2)
    w.add_argument("--bound-ms", type=float, default=10.0)
    w.add_argument("--loaded-bound-ms", type=float, default=None, help="the p99 bound beside the competitors")
    w.add_argument("--loaded-engines", default=ENGINES, help="the engines measured beside the competitors")
    args = parser.parse_args()
    if args.command == "winners" and args.loaded_bound_ms is None:
        args.loaded_bound_ms = args.bound_ms
    threads(args) if args.command == "threads" else winners(args)


if __name__ == "__main__":
    main()
