"""Which file and engine to ship: every engine and precision of stored winners, side by side.

Makes the winners' onnxruntime int8 and fp16 files (`bench quantize`), re-measures them with `bench benchmark`
(every engine asked for, batch 1 and 64, each model timed --repeat times, one repetition after the other), then
writes, per architecture, each (engine, precision): its test accuracy through that engine on the whole test set and
the change against the same engine's fp32, images/s at batch 64 (the median repetition) and the speedup over the
same engine's fp32 and over ONNX Runtime fp32, its load time and memory.
Writes the section "Engines: <runs>" of benchmarks/RESULTS.md.

    python benchmarks/engines.py --store runs/cifar/bench.db --run RUN [--run RUN] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from record import cpu_name, record

BENCH = str(Path(sys.executable).parent / "bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--run", action="append", required=True, help="a run id, a unique prefix, or latest")
    parser.add_argument("--engines", default="onnxruntime,openvino,torch")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument(
        "--measure",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="re-measure (default), or write the table from what is stored",
    )
    args = parser.parse_args()
    common = ["--store", args.store]
    records = []
    for run in args.run:
        if args.measure:
            # onnxruntime's int8 and fp16 files (exported first where a run was trained with --no-benchmark)
            subprocess.run([BENCH, "quantize", run, "--no-benchmark", *common], check=True, stdout=subprocess.DEVNULL)
            subprocess.run(
                [
                    BENCH,
                    "benchmark",
                    run,
                    "--engines",
                    args.engines,
                    "--batch-sizes",
                    "1,64",
                    "--repeat",
                    str(args.repeat),
                    "--min-time",
                    str(args.min_time),
                    "--json",
                    *common,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        out = subprocess.run(
            [BENCH, "report", run, "--json", "--measurements", *common], check=True, capture_output=True, text=True
        ).stdout
        trials = json.loads(
            subprocess.run([BENCH, "report", run, "--json", *common], check=True, capture_output=True, text=True).stdout
        )
        records.append((run, json.loads(out), trials))
    write(args, records)


def _median(values: list[float]) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[(len(values) - 1) // 2] if values else None


def write(args, records) -> None:
    import onnxruntime
    import torch

    try:
        import openvino

        ov = f", openvino {openvino.__version__}"
    except ImportError:
        ov = ""
    lines = []
    run_ids = []
    for _run, rows, trials in records:
        for trial in (t for t in trials if t["winner"] and t["latency"]):
            run_ids.append(trial["run"])
            evaluated = {}
            for r in rows:
                if r["trial"] == trial["trial"] and r["run"] == trial["run"]:
                    evaluated[(r["engine"], r["precision"])] = r["test_acc"]
            ok = [
                r
                for r in rows
                if r["trial"] == trial["trial"]
                and r["run"] == trial["run"]
                and r["status"] == "ok"
                and r["provider"] in ("CPUExecutionProvider", "cpu")
            ]
            keys = list(dict.fromkeys((r["engine"], r["precision"]) for r in ok))

            def rate(engine, precision, batch, ok=ok):
                return _median(
                    [
                        r["throughput"]
                        for r in ok
                        if (r["engine"], r["precision"], r["batch_size"]) == (engine, precision, batch)
                    ]
                )

            def first(engine, precision, key, ok=ok):
                return next((r[key] for r in ok if (r["engine"], r["precision"]) == (engine, precision)), None)

            ort = rate("onnxruntime", "fp32", 64)
            lines += [
                "",
                f"**{trial['architecture']}** (run `{trial['run']}`, t{trial['trial']:03d}, PyTorch test accuracy "
                f"{100 * trial['test_acc']:.2f}%):",
                "",
                "| engine | precision | test % | Δ vs its fp32 | images/s b64 | vs its fp32 | vs ORT fp32 | p50 b1 "
                "(ms) | load (ms) | peak memory (MB) | noisy |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            for engine, precision in sorted(keys, key=lambda k: (k[0], k[1] != "fp32", k[1])):
                acc, base = evaluated.get((engine, precision)), evaluated.get((engine, "fp32"))
                b64, own = rate(engine, precision, 64), rate(engine, "fp32", 64)
                b1 = _median(
                    [
                        r["p50_ms"]
                        for r in ok
                        if (r["engine"], r["precision"], r["batch_size"]) == (engine, precision, 1)
                    ]
                )
                noisy = sum(bool(r["noisy"]) for r in ok if (r["engine"], r["precision"]) == (engine, precision))
                lines.append(
                    f"| {engine} | {precision} | {100 * acc:.2f} | "
                    + (f"{100 * (acc - base):+.2f}" if acc is not None and base is not None else "-")
                    + " | "
                    + (f"{b64:,.0f}" if b64 else "-")
                    + " | "
                    + (f"{b64 / own:.2f}x" if b64 and own else "-")
                    + " | "
                    + (f"{b64 / ort:.2f}x" if b64 and ort else "-")
                    + " | "
                    + (f"{b1:.2f}" if b1 else "-")
                    + " | "
                    + f"{first(engine, precision, 'session_ms') or 0:,.0f} | "
                    + f"{first(engine, precision, 'peak_rss_mb') or 0:,.0f} | "
                    + f"{noisy} |"
                )
    cores = os.cpu_count()
    heading = "Engines: " + ", ".join(dict.fromkeys(run_ids))
    section = "\n".join(
        [
            f"## {heading}",
            "",
            f"{cores} cores of {cpu_name()}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}{ov}. "
            f"Command: `python benchmarks/engines.py --store {args.store} "
            + " ".join(f"--run {r}" for r in args.run)
            + f" --engines {args.engines} --repeat {args.repeat}`. "
            "`bench benchmark` on each run's winners: every engine and precision on the CPU at batch 1 and 64, "
            f"{args.repeat} repetitions one after the other (the median shown), at least 100 runs and "
            f"{args.min_time:g} s each, intra-op threads {cores}; test accuracy through each engine on the whole "
            "test set. int8: onnxruntime's static QDQ file (per-channel weights, 512 calibration images) and "
            "OpenVINO's own, by NNCF post-training quantization on the same 512 images; bf16: OpenVINO's precision "
            "hint. noisy: measurements marked noisy (bench/core/noise.py) of that engine and precision.",
            *lines,
        ]
    )
    record(heading, section)
    print(section)


if __name__ == "__main__":
    main()
