"""Int8 and fp16 variants of a verified fp32 ONNX export, made with onnxruntime's own tools and checked as the
export is: accuracy on the whole test set through onnxruntime, top-1 agreement with the fp32 model, file size.

int8 is static where it can be (QDQ format, per-channel int8 weights, int8 activations calibrated on training
images); where static quantization is impossible (no usable calibration images, or the tool fails on the graph)
it is dynamic (int8 weights, activations quantized at run time) and the note says why. fp16 keeps float32
inputs and outputs and casts inside. A variant that loses more test accuracy than allowed is kept and flagged,
never dropped; one that cannot be made or run is recorded as failed with the reason, and the others go on."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader

from bench.core.errors import BenchError, one_line
from bench.core.files import no_room
from bench.core.status import Precision, VariantStatus
from bench.options.choices import QUANTIZE
from bench.options.config import stage_settings
from bench.results.deployed import too_lossy
from bench.runtime import onnxrt

QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
DYNAMIC_INT8_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
# Operators that move or reshape values without arithmetic: neither "quantized" nor "left in float".
PLUMBING_OPS = {
    "Reshape",
    "Flatten",
    "Shape",
    "Constant",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Identity",
    "Transpose",
    "Cast",
}


@stage_settings(QUANTIZE)
class QuantizeSettings:
    """Which variants are made and how: RunConfig's quantize options (bench.options), with the same names and
    defaults."""

    quantize: tuple[str, ...]  # the precisions made: int8, fp16
    calibration_images: int  # training images the int8 activations are calibrated on
    calibration_method: str  # minmax, entropy or percentile (onnxruntime's)
    max_accuracy_drop: float  # points a variant may lose before it is flagged


@dataclass
class Variant:
    precision: str
    status: str = VariantStatus.OK
    note: str | None = None
    data: bytes | None = None
    test_acc: float | None = None
    fp32_test_acc: float | None = None
    top1_agreement: float | None = None
    method: dict = field(default_factory=dict)

    def row(self, max_accuracy_drop: float) -> dict:
        """The store's record of this variant (the file's path is added by whoever writes it)."""
        return {
            "precision": self.precision,
            "status": self.status,
            "note": self.note,
            "size_bytes": len(self.data) if self.data is not None else None,
            "test_acc": self.test_acc,
            "fp32_test_acc": self.fp32_test_acc,
            "top1_agreement": self.top1_agreement,
            "max_accuracy_drop": max_accuracy_drop,
            "method": self.method,
        }


class _Images(CalibrationDataReader):
    def __init__(self, name: str, images: np.ndarray, batch: int = 32):
        self.batches = iter([{name: images[i : i + batch]} for i in range(0, len(images), batch)])

    def get_next(self):
        return next(self.batches, None)


def calibration_problem(images: np.ndarray, input_shape: tuple[int, ...]) -> str | None:
    """Why ``images`` cannot calibrate a model taking ``input_shape`` images, or None."""
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(input_shape):
        return f"the calibration images have shape {tuple(images.shape[1:])}, the model takes {tuple(input_shape)}"
    if len(images) == 0:
        return "there are no calibration images"
    bad = int((~np.isfinite(images.reshape(len(images), -1))).any(axis=1).sum())
    if bad:
        return f"{bad} of the {len(images)} calibration images hold NaN or infinite values"
    if float(images.std()) == 0.0:
        return f"the {len(images)} calibration images are all one constant value"
    return None


def operators(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """Operator counts of a quantized model: those computing in int8 (fed by DequantizeLinear in QDQ format, or
    integer operators) and those left in float."""
    produced_by = {out: n.op_type for n in model.graph.node for out in n.output}
    int8: collections.Counter = collections.Counter()
    floats: collections.Counter = collections.Counter()
    for node in model.graph.node:
        if node.op_type in QDQ_OPS | PLUMBING_OPS or node.op_type == "DynamicQuantizeLinear":
            continue
        quantized = node.op_type in DYNAMIC_INT8_OPS or any(
            produced_by.get(i) == "DequantizeLinear" for i in node.input
        )
        (int8 if quantized else floats)[node.op_type] += 1
    return {Precision.INT8: dict(int8), "float": dict(floats)}


@contextlib.contextmanager
def _quiet_logging():
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _loads(data: bytes, workdir: Path) -> None:
    """Raise when onnxruntime cannot load the model ``data``."""
    path = workdir / "check.onnx"
    path.write_bytes(data)
    onnxrt.ort_session(path, "cpu")


def _without(workdir: Path, text: str) -> str:
    """A tool's message without the temporary folder it named (gone once the variant is made)."""
    return text.replace(f"{workdir}/", "").replace(str(workdir), "")


def quantize_int8(fp32_path: Path, calibration: np.ndarray, settings: QuantizeSettings, workdir: Path):
    """(model bytes, method, note): static int8 where possible, else dynamic with the reason in the note."""
    fp32 = onnx.load(str(fp32_path))
    dims = [d.dim_value for d in fp32.graph.input[0].type.tensor_type.shape.dim[1:]]
    problem = calibration_problem(calibration, tuple(dims))
    if problem is None:
        try:
            data, method = _static_int8(fp32_path, fp32.graph.input[0].name, calibration, settings, workdir)
            return data, method, None
        except Exception as exc:  # the tool's own errors are of many types; the message is what matters
            if full := no_room(exc, workdir / "int8.onnx"):
                raise full from exc
            problem = f"static quantization failed ({_without(workdir, one_line(exc))})"
    try:
        data, method = _dynamic_int8(fp32, workdir)
    except Exception as exc:
        if full := no_room(exc, workdir / "int8.onnx"):
            raise full from exc
        raise BenchError(f"{problem}; dynamic quantization failed too ({_without(workdir, one_line(exc))})") from exc
    return data, method, f"{problem}: dynamic int8 instead (8-bit weights, activations quantized at run time)"


def _tool() -> str:
    return f"onnxruntime.quantization ({ort.__version__})"


def _static_int8(fp32_path: Path, input_name: str, calibration: np.ndarray, settings: QuantizeSettings, workdir: Path):
    """(bytes, method) of static int8 in QDQ format: per-channel int8 weights, int8 activations calibrated on
    ``calibration``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre, out = workdir / "pre.onnx", workdir / "int8.onnx"
    # Symbolic shape inference is skipped: its Reshape rule fails on the dynamo exporter's files.
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    method = getattr(CalibrationMethod, CALIBRATORS[settings.calibration_method])
    # Its calibrators print their progress, and it logs each per-channel axis it skips (a batch norm's
    # one-dimensional weight) as a warning on the root logger: neither is for the user.
    with contextlib.redirect_stdout(io.StringIO()), _quiet_logging():
        quantize_static(
            str(pre),
            str(out),
            _Images(input_name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
    data = out.read_bytes()
    _loads(data, workdir)  # a static file onnxruntime cannot load (an opset-7 export's): dynamic instead
    return data, {
        "kind": "static",
        "tool": _tool(),
        "format": "QDQ",
        "weights": "int8, per channel",
        "activations": "int8, calibrated",
        "calibration_images": len(calibration),
        "calibration_method": settings.calibration_method,
        "operators": operators(onnx.load_from_string(data)),
    }


CALIBRATORS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}  # onnxruntime's names


def _dynamic_int8(fp32: onnx.ModelProto, workdir: Path):
    """(bytes, method) of dynamic int8: per-channel int8 weights, activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The dynamo exporter's intermediate shapes (value_info) disagree with the tool's own shape inference
    # once weights are rewritten: drop them, the tool infers them again.
    del fp32.graph.value_info[:]
    plain, out = workdir / "plain.onnx", workdir / "int8.onnx"
    onnx.save(fp32, str(plain))
    with _quiet_logging():
        quantize_dynamic(str(plain), str(out), weight_type=QuantType.QInt8, per_channel=True)
    data = out.read_bytes()
    _loads(data, workdir)
    return data, {
        "kind": "dynamic",
        "tool": _tool(),
        "weights": "int8, per channel",
        "activations": "uint8, scaled at run time",
        "operators": operators(onnx.load_from_string(data)),
    }


def valid_file(data: bytes) -> bytes:
    """A variant as every ONNX tool reads it: its nodes topologically sorted (onnxruntime's fp16 converter appends
    the input casts after the nodes that use them, which onnxruntime tolerates and onnx.checker and other tools
    refuse), its metadata JSON (json_metadata), checked by ``onnx.checker.check_model(full_check=True)``."""
    model = onnx.load_from_string(json_metadata(data))
    sort_nodes(model.graph)
    # The quantizer raises an old export's opset (7 -> 11: QuantizeLinear needs 10) but keeps its IR version (3,
    # which wants every initializer among the graph inputs): the IR version that opset needs.
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    model.ir_version = max(model.ir_version, needed)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def sort_nodes(graph) -> None:
    """Order ``graph``'s nodes so that each comes after the nodes producing its inputs (Kahn's algorithm, stable:
    nodes already in order keep it)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:  # a cycle, or an input produced nowhere: leave the rest as it was, the checker says why
            ordered += pending
            break
        for node in ready:
            known.update(node.output)
        ordered += ready
        taken = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in taken]
    del graph.node[:]
    graph.node.extend(ordered)


def json_metadata(data: bytes) -> bytes:
    """The model ``data`` with every metadata value JSON, as cnnbench's own are: the keys onnxruntime's quantizer adds
    (``onnx.infer``, ``onnx.quant.pre_process``: plain text) are re-encoded as JSON strings, so that one reader
    (``{k: json.loads(v) ...}``, README's deployment snippet) reads every file cnnbench writes."""
    model = onnx.load_from_string(data)
    changed = False
    for prop in model.metadata_props:
        try:
            json.loads(prop.value)
        except ValueError:
            prop.value, changed = json.dumps(prop.value), True
    return model.SerializeToString() if changed else data


def to_fp16(fp32_path: Path) -> tuple[bytes, dict]:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    return model.SerializeToString(), {
        "kind": Precision.FP16,
        "tool": f"onnxruntime.transformers.float16 ({ort.__version__})",
        "io": "float32 inputs and outputs, cast inside",
    }


def make_variants(
    fp32_path: Path,
    calibration: np.ndarray,
    test_images: np.ndarray,
    labels: np.ndarray,
    settings: QuantizeSettings,
    threads: int | None = None,
) -> list[Variant]:
    """Every precision of ``settings``, made from ``fp32_path`` and checked on ``test_images``; failures are
    returned as failed variants, never raised."""
    fp32_logits = onnxrt.logits(onnxrt.ort_session(fp32_path, "cpu", threads), test_images)
    fp32_correct = int((fp32_logits.argmax(1) == labels).sum())
    fp32_acc = fp32_correct / len(labels)
    out = []
    with tempfile.TemporaryDirectory(prefix="cnnbench-quantize-") as tmp:
        for precision in settings.quantize:
            variant = Variant(precision, fp32_test_acc=fp32_acc)
            workdir = Path(tmp) / precision
            workdir.mkdir()
            try:
                if precision == Precision.INT8:
                    variant.data, variant.method, variant.note = quantize_int8(
                        fp32_path, calibration, settings, workdir
                    )
                else:
                    variant.data, variant.method = to_fp16(fp32_path)
                variant.data = valid_file(variant.data)
                path = workdir / "model.onnx"
                path.write_bytes(variant.data)
                logits = onnxrt.logits(onnxrt.ort_session(path, "cpu", threads), test_images)
            except Exception as exc:  # one variant's failure is recorded, the others go on
                if full := no_room(
                    exc, workdir / "model.onnx"
                ):  # not the variant's failure: nothing recorded, made again by a resume
                    raise full from exc
                variant.status = VariantStatus.FAILED
                note = str(exc) if isinstance(exc, BenchError) else f"{precision}: {one_line(exc)}"
                variant.note = _without(Path(tmp), note)
                out.append(variant)
                continue
            predictions = logits.argmax(1)
            correct = int((predictions == labels).sum())
            variant.test_acc = correct / len(labels)
            variant.top1_agreement = float((predictions == fp32_logits.argmax(1)).mean())
            if too_lossy(fp32_correct, correct, len(labels), settings.max_accuracy_drop):
                variant.status = VariantStatus.FLAGGED
                drop = 100 * (fp32_correct - correct) / len(labels)
                flag = (
                    f"loses {drop:.2f} points of test accuracy against fp32 (allowed: {settings.max_accuracy_drop:g})"
                )
                variant.note = f"{flag}; {variant.note}" if variant.note else flag
            out.append(variant)
    return out
