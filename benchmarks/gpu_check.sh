#!/usr/bin/env bash
# The GPU path, exercised in one command (issue 16): under 8 minutes on one GPU.
#
#   1. the default sweep (cnn_dropout on the embedded digits) trained on CUDA, its winner exported, its int8 and
#      fp16 variants made, all benchmarked in every engine on every device: ONNX Runtime's CPU, CUDA and TensorRT
#      providers (IO binding on the GPU), PyTorch eager and torch.compile on CPU and CUDA, OpenVINO on the CPU where
#      installed, with a batch-size curve (1 to 256);
#      then its serving scenarios (single-stream, offline, server under a 10 ms p99 bound, alone and with dynamic
#      batches of up to 8) on every device;
#   2. a short CIFAR-10 sweep on CUDA (the lab's config, 2 epochs) when the archive is here: data/cifar10-jpeg.tar.gz
#      (copy ../shared/data/cifar10-jpeg.tar.gz there and carry it), the same deployment;
#   3. the figures (GPU, versions, accuracy, latency per provider and batch) into benchmarks/RESULTS.md, section
#      "GPU check", and printed.
#
# DEVICE=cpu PROVIDERS=cpu runs the same steps without a GPU (to check the script itself). Results go to a throwaway store: $STORE (default: a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
PROVIDERS=${PROVIDERS:-cpu,cuda,tensorrt}
ENGINES=${ENGINES:-auto}
STORE=${STORE:-$(mktemp -d)/bench.db}
PY=${PY:-python3}
BENCH=("$PY" -m bench.cli)
# A bare GPU machine has torch, onnxruntime and the rest but not cnnbench, and no network: install it from here.
"$PY" -c "import importlib.metadata as m; m.distribution('cnnbench')" 2>/dev/null \
  || "$PY" -m pip install -q --no-deps --no-build-isolation --no-index -e .
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"

"${BENCH[@]}" run --plugin cnn_dropout --device "$DEVICE" --providers "$PROVIDERS" --engines "$ENGINES" --batch-curve \
  --min-time 0.5 --store "$STORE" -q
"${BENCH[@]}" benchmark latest --scenario single-stream,offline,server --latency-bound-ms 10 --dynamic-batch 8 \
  --providers "$PROVIDERS" --engines "$ENGINES" --batch-sizes 1 --store "$STORE" \
  || echo "serving scenarios: see their rows' notes"
# torch.compile compiles once per batch shape: two shapes, not the curve's nine
"${BENCH[@]}" benchmark latest --engines torch-compile --providers "$PROVIDERS" --batch-sizes 1,64 --store "$STORE" \
  || echo "torch-compile: see its rows' notes"
if [ -f data/cifar10-jpeg.tar.gz ]; then
  [ -d data/cifar10-jpeg ] || tar xzf data/cifar10-jpeg.tar.gz -C data/
  "${BENCH[@]}" run --config configs/rob313.toml --dataset imagefolder:data/cifar10-jpeg --epochs 2 \
    --device "$DEVICE" --providers "$PROVIDERS" --engines "$ENGINES" --batch-sizes 1,64,256 --store "$STORE" -q
else
  echo "no data/cifar10-jpeg.tar.gz: the CIFAR-10 step is skipped"
fi

"$PY" - "$STORE" "$DEVICE" <<'EOF'
import sys

import onnxruntime as ort
import torch

sys.path.insert(0, "benchmarks")
from record import record  # noqa: E402

from bench.store import Store  # noqa: E402

store, device = sys.argv[1], sys.argv[2]
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
lines = ["## GPU check", "", f"`benchmarks/gpu_check.sh` (DEVICE={device}): {gpu}; torch {torch.__version__}, "
         f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}). Training on {device}; each "
         "winner benchmarked by `bench run`'s defaults (10 warm-up runs, then at least 100 runs and 1 s; p50).", "",
         "| run | dataset | winner | precision | test acc % | engine | provider | batch | p50 ms | images/s | status |",
         "| --- | --- | --- | --- | ---: | --- | --- | ---: | ---: | ---: | --- |"]
with Store(store, readonly=True) as s:
    for run in s.runs():
        for t in s.trials(run["id"]):
            accs = {(e["engine"], e["precision"]): e["test_acc"] for e in s.evaluations_of(t["id"])}
            for m in s.latency_of(t["id"]):
                acc = accs.get((m["engine"], m["precision"]))
                p50 = f"{m['p50_ms']:.3f}" if m["p50_ms"] is not None else "-"
                rate = f"{m['throughput']:,.0f}" if m["throughput"] is not None else "-"
                shown = f"{100 * acc:.2f}" if acc is not None else "-"
                lines.append(f"| {run['id']} | {run['dataset'].split('/')[-1]} | {t['architecture']} | "
                             f"{m['precision']} | {shown} | {m['engine']} | {m['provider']} | "
                             f"{m['batch_size']} | {p50} | {rate} | {m['status']}{': ' + m['note'] if m['note'] else ''} |")
lines += ["", "Serving scenarios of the digits winner (`bench benchmark --scenario ...`; p99 bound 10 ms):", "",
          "| engine | provider | precision | scenario | setup | figures | status |", "| --- | --- | --- | --- | --- | --- | --- |"]
with Store(store, readonly=True) as s:
    for t in s.trials(s.runs()[0]["id"]):
        for r in s.serving_of(t["id"]):
            res = r["result"] or {}
            if r["scenario"] == "single-stream":
                shown = " / ".join(f"{res[k]:.3f}" if res.get(k) is not None else "n/a" for k in ("p50_ms", "p90_ms", "p99_ms"))
                shown += f" ms (n {res.get('queries')})"
            elif r["scenario"] == "offline":
                shown = f"{res.get('throughput')} img/s (batch {res.get('batch_size')})"
            else:
                shown = f"max {res.get('max_qps')} QPS, p99 {res.get('p99_ms')} ms, failed at {res.get('failed_qps')}"
            lines.append(f"| {r['engine']} | {r['provider']} | {r['precision']} | {r['scenario']} | {r['setup']} | "
                         f"{shown} | {r['status']}{': ' + r['note'] if r['note'] else ''} |")
section = "\n".join(lines) + "\n"
record("GPU check", section)
print(section)
EOF
