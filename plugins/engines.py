"""cnnbench's own inference engines, registered through the `register_engines` hook like any plugin's: onnxruntime (CPU;
CUDA and TensorRT execution providers where present), torch (eager; `torch-compile`, asked for by name, compiled), and
openvino (CPU; fp32, its bf16 precision hint where the CPU has bf16, and its own int8 by NNCF's post-training
quantization; `pip install 'cnnbench[openvino]'`)."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

import bench
from bench import Unavailable


class OnnxRuntime:
    """Every ONNX file cnnbench made (fp32, int8, fp16) in onnxruntime; the graph optimization level as
    --graph-optimization says (auto: the faster of 'extended' and 'all' in a 20-run probe on the batch timed)."""

    def devices(self):
        return {"cpu": None, "cuda": bench.cuda_unavailable_reason(), "tensorrt": bench.tensorrt_unavailable_reason()}

    def precisions(self, model):
        return {precision: None for precision in model.files}

    def load(self, model, device, precision, threads, settings, example):
        return _OrtSession(model.files[precision], device, threads, settings, example)


class _OrtSession:
    def __init__(self, path, device, threads, settings, example):
        import onnxruntime as ort

        levels = bench.AUTO_LEVELS if settings.graph_optimization == "auto" else (settings.graph_optimization,)
        self.method = {
            "onnxruntime": ort.__version__,
            "intra_op_threads": threads,
            "inter_op_threads": 1,
            "io_binding": device != "cpu",
            "graph_optimization": levels[0],
            "intra_op_allow_spinning": settings.ort_spinning == "on",
        }
        chosen, probed = None, {}
        for level in levels:
            t0 = time.perf_counter()
            try:
                session = bench.ort_session(path, device, threads, level, settings.ort_spinning == "on")
            except bench.ProviderUnavailable as exc:
                raise Unavailable(str(exc)) from None
            load_ms = (time.perf_counter() - t0) * 1000
            if len(levels) == 1:
                chosen = (session, load_ms, None)
                break
            first_ms, probed[level] = bench.probe(lambda s=session: s.run(None, {s.get_inputs()[0].name: example}))
            if chosen is None or probed[level] < probed[chosen[3]]:
                chosen = (session, load_ms, first_ms, level)
        self.session, self.load_ms, self.first_ms = chosen[:3]
        if probed:
            self.method.update(graph_optimization=chosen[3], graph_optimization_probe_p50_ms=probed)
        self.device = device
        self.binding = None

    def bind(self, x):
        import onnxruntime as ort

        session = self.session
        name, out = session.get_inputs()[0].name, session.get_outputs()[0].name
        if self.device == "cpu":
            feed = {name: x}
            return lambda: session.run([out], feed)
        # IO binding: input and output stay on the GPU, so no host<->device copy is timed.
        self.binding = session.io_binding()
        self.binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        self.binding.bind_output(out, "cuda")
        return lambda: session.run_with_iobinding(self.binding)

    def sync(self):
        if self.binding is not None:
            self.binding.synchronize_outputs()

    def predict(self, x):
        return self.session.run(None, {self.session.get_inputs()[0].name: x})[0]


class Torch:
    """The PyTorch model itself, in eval mode under inference_mode: eager, or compiled by torch.compile."""

    def __init__(self, compiled: bool = False):
        self.compiled = compiled
        self.default = not compiled  # compiling takes seconds to minutes per batch shape: asked for by name

    def devices(self):
        import torch

        cuda = None if torch.cuda.is_available() else "no CUDA GPU is visible (torch.cuda.is_available() is False)"
        return {"cpu": None, "cuda": cuda}

    def precisions(self, model):
        return {"fp32": None if model.module is not None else "no PyTorch model to run"}

    def load(self, model, device, precision, threads, settings, example):
        import torch

        module = model.module.to(device).eval()
        method = {"torch": torch.__version__, "intra_op_threads": threads, "mode": "eager, eval, inference_mode"}
        if self.compiled:
            try:
                module = torch.compile(module)
                with torch.inference_mode():
                    module(torch.from_numpy(example).to(device))  # compiles for this shape: part of the load
            except Exception as exc:
                reason = " ".join(str(exc).split())[:200]
                raise Unavailable(f"torch.compile failed: {exc.__class__.__name__}: {reason}") from None
            method["mode"] = "torch.compile (default mode), eval, inference_mode"
        return _TorchSession(module, device, method)


class _TorchSession:
    def __init__(self, module, device, method):
        self.module, self.device, self.method = module, device, method

    def bind(self, x):
        import torch

        tensor = torch.from_numpy(x).to(self.device)

        def run():
            with torch.inference_mode():
                self.module(tensor)

        return run

    def sync(self):
        import torch

        if self.device == "cuda":
            torch.cuda.synchronize()

    def predict(self, x):
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def close(self):
        self.module.cpu()


OPENVINO_EXTRA = "pip install 'cnnbench[openvino]'"


class OpenVino:
    """OpenVINO reading the fp32 ONNX export: fp32, its bf16 precision hint (CPUs with bf16), and int8 quantized by
    NNCF (post-training, calibrated on the trial's own training images), kept as an IR beside the trial."""

    def devices(self):
        try:
            import openvino as ov
        except ImportError:
            return {"cpu": f"openvino is not installed: {OPENVINO_EXTRA}"}
        available = ov.Core().available_devices
        return {
            "cpu": None if "CPU" in available else "OpenVINO sees no CPU device",
            "gpu": None if any(d.startswith("GPU") for d in available) else "OpenVINO sees no (Intel) GPU",
        }

    def precisions(self, model):
        import openvino as ov

        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        try:
            import nncf  # noqa: F401

            int8 = None if model.calibration is not None else "no calibration images"
        except ImportError:
            int8 = f"NNCF is not installed: {OPENVINO_EXTRA}"
        return {
            "fp32": None,
            "bf16": None if "BF16" in capabilities else "this CPU has no bf16 (OPTIMIZATION_CAPABILITIES)",
            "int8": int8,
        }

    def prepare(self, model, precision):
        if precision == "int8":
            self._int8(model)

    def _int8(self, model) -> Path:
        """NNCF's post-training int8 of the fp32 export, made once per export (keyed by its hash). NNCF draws progress
        bars and logs as it works: silenced, as the exporters are."""
        import openvino as ov

        digest = hashlib.sha256(model.onnx.read_bytes()).hexdigest()[:16]
        xml = model.workdir / f"openvino-int8-{digest}.xml"
        if not xml.is_file():
            with bench.silenced():
                import nncf

                nncf.set_log_level(logging.ERROR)
                calibration = nncf.Dataset([model.calibration[i : i + 1] for i in range(len(model.calibration))])
                quantized = nncf.quantize(
                    ov.Core().read_model(str(model.onnx)), calibration, subset_size=len(model.calibration)
                )
            ov.save_model(quantized, str(xml))
        return xml

    def load(self, model, device, precision, threads, settings, example):
        import openvino as ov

        core = ov.Core()
        source = self._int8(model) if precision == "int8" else model.onnx
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "ENABLE_CPU_PINNING": settings.openvino_pinning == "on",
        }
        compiled = core.compile_model(core.read_model(str(source)), device.upper(), config)
        method = {
            "openvino": ov.__version__,
            "intra_op_threads": threads,
            "precision_hint": config["INFERENCE_PRECISION_HINT"],
            "performance_hint": "LATENCY",
            "cpu_pinning": config["ENABLE_CPU_PINNING"],
        }
        if precision == "int8":
            import nncf

            method.update(
                int8=f"NNCF {nncf.__version__} post-training quantization, {len(model.calibration)} calibration images",
                file=source.name,
            )
        return _OpenVinoSession(compiled, method)


class _OpenVinoSession:
    def __init__(self, compiled, method):
        self.compiled, self.method = compiled, method

    def bind(self, x):
        request = self.compiled.create_infer_request()
        request.set_input_tensor(__import__("openvino").Tensor(x))
        return request.infer

    def predict(self, x):
        return np.asarray(self.compiled(x)[0])


@bench.hookimpl
def register_engines(register):
    register(
        "onnxruntime",
        OnnxRuntime(),
        description="ONNX Runtime: every ONNX file (fp32, int8, fp16); CPU, CUDA and TensorRT execution providers",
    )
    register("torch", Torch(), description="PyTorch eager, the trained model itself (fp32)")
    register("torch-compile", Torch(compiled=True), description="PyTorch with torch.compile (fp32; by name only)")
    register("openvino", OpenVino(), description="OpenVINO: the fp32 export at fp32 and bf16 hints, and NNCF int8")
