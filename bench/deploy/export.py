"""Export a trained model to ONNX: a self-describing file, checked by onnx, compared with PyTorch on
real test images before anyone benchmarks it."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from bench.core.errors import one_line
from bench.core.files import no_room
from bench.core.quiet import silenced
from bench.core.status import ExportStatus
from bench.options.choices import EXPORT, EXPORTERS
from bench.options.config import stage_settings
from bench.runtime import onnxrt

PARITY_IMAGES = 512  # at most this many test images are compared logit by logit
INPUT_NAME, OUTPUT_NAME = "input", "logits"


@stage_settings(EXPORT)
class ExportSettings:
    """How winners are exported: RunConfig's export options (bench.options), with the same names and defaults."""

    exporter: str  # torch.onnx's dynamo exporter (torchscript if it fails) or torchscript
    opset: int
    tolerance: float  # largest |logit difference| against PyTorch accepted, as a share of the logits' scale


DEFAULT = ExportSettings()


class ExportFailed(Exception):
    pass


@dataclass
class ExportResult:
    status: str  # bench.core.status.ExportStatus
    tolerance: float
    note: str | None = None
    data: bytes | None = None  # the ONNX file
    exporter: str | None = None
    opset: int | None = None
    parity_images: int | None = None
    max_abs_diff: float | None = None
    top1_agreement: float | None = None


def _export_with(exporter: str, model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    with silenced():
        if exporter == "dynamo":
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=True,
                verbose=False,
                external_data=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
        else:
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamo=False,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )


def to_onnx(
    model: nn.Module, input_shape, metadata: dict, opset: int = DEFAULT.opset, exporter: str = DEFAULT.exporter
):
    """The model as an onnx.ModelProto with a dynamic batch axis and ``metadata`` (JSON values) in its
    metadata_props. Uses ``exporter``; if the dynamo exporter fails, tries the TorchScript one and says so.
    Returns (proto, description of the exporter used). Raises ExportFailed with every reason."""
    model = model.cpu().eval()
    example = torch.zeros(2, *input_shape)  # batch 2, so that the batch axis is not specialized to 1
    order = [exporter] + [e for e in EXPORTERS if e != exporter and exporter == "dynamo"]
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in order:
            path = Path(tmp) / f"{name}.onnx"
            try:
                _export_with(name, model, example, path, opset)
                proto = _at_opset(onnx.load(str(path)), opset)
                break
            except Exception as exc:
                if full := no_room(exc, path):  # no exporter writes into a full disk: say so, do not fall back
                    raise full from exc
                failures.append(f"{name} exporter: {one_line(exc)}")
        else:
            raise ExportFailed("; ".join(failures))
    used = f"torch.onnx {name} (torch {torch.__version__})"
    if failures:
        used += f", after {failures[0]}"
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise ExportFailed(f"onnx.checker rejected the exported model: {one_line(exc)}") from exc
    return proto, used


@torch.inference_mode()
def torch_logits(model: nn.Module, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i : i + chunk]) for i in range(0, len(images), chunk)]).float().cpu()


def parity(model: nn.Module, sess, images: torch.Tensor) -> tuple[float, float, float]:
    """(max |logit difference|, share of images with the same top-1 class, the logits' scale: their largest
    magnitude, at least 1) between PyTorch and ORT."""
    expected = torch_logits(model, images).numpy()
    got = onnxrt.logits(sess, images)
    if got.shape != expected.shape:
        raise ExportFailed(f"onnxruntime returned logits of shape {got.shape}, PyTorch {expected.shape}")
    diff = float(np.abs(got - expected).max()) if got.size else 0.0
    if not np.isfinite(diff):
        diff = float("inf")
    agree = float((got.argmax(1) == expected.argmax(1)).mean()) if len(got) else 1.0
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    return diff, agree, scale


@dataclass
class Parity:
    ok: bool
    images: int
    max_abs_diff: float
    top1_agreement: float
    note: str | None = None


def check_parity(model: nn.Module, path, images: torch.Tensor, tolerance: float = DEFAULT.tolerance) -> Parity:
    """Run the ONNX file at ``path`` in onnxruntime (CPU) and PyTorch on the same real, normalized images. They agree
    when the largest logit difference is within ``tolerance`` of the logits' scale (their largest magnitude, at least
    1): float32 kernels that add in another order differ by a few units of the last place of the largest values, so
    an absolute tolerance rejects a deep net's faithful export and accepts a shallow net's broken one."""
    images = images[:PARITY_IMAGES]
    diff, agree, scale = parity(model, onnxrt.ort_session(path, "cpu"), images)
    if diff <= tolerance * scale:
        return Parity(True, len(images), diff, agree)
    note = (
        f"ONNX logits differ from PyTorch by up to {diff:.3g}, {diff / scale:.2g} of their scale {scale:.3g} "
        f"(--tolerance {tolerance:g}); top-1 agreement {100 * agree:.2f}% on {len(images)} test images"
    )
    return Parity(False, len(images), diff, agree, note)


def export_model(
    model: nn.Module,
    input_shape,
    metadata: dict,
    parity_images: torch.Tensor,
    tolerance: float = DEFAULT.tolerance,
    opset: int = DEFAULT.opset,
    exporter: str = DEFAULT.exporter,
) -> ExportResult:
    """Export, check, and compare with PyTorch on ``parity_images`` (normalized, real test images). A file
    beyond the tolerance keeps its bytes (to inspect) but its status is parity_failed."""
    result = ExportResult(status=ExportStatus.EXPORT_FAILED, tolerance=tolerance, opset=opset)
    try:
        proto, result.exporter = to_onnx(model, input_shape, metadata, opset, exporter)
    except ExportFailed as exc:
        result.note = str(exc)
        return result
    result.data = proto.SerializeToString()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            path.write_bytes(result.data)
            check = check_parity(model, path, parity_images, tolerance)
        except Exception as exc:
            if full := no_room(exc, path):
                raise full from exc
            result.note = f"the exported model does not run in onnxruntime: {one_line(exc)}"
            return result
    result.parity_images, result.max_abs_diff, result.top1_agreement = (
        check.images,
        check.max_abs_diff,
        check.top1_agreement,
    )
    result.status = ExportStatus.OK if check.ok else ExportStatus.PARITY_FAILED
    result.note = check.note
    return result


def file_opset(proto: onnx.ModelProto) -> int | None:
    """The default-domain opset an ONNX model declares."""
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _at_opset(proto: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """``proto`` at exactly ``opset``: an exporter may write another version (the dynamo exporter writes at
    least 18), so convert it with onnx's version converter, or fail saying why."""
    if file_opset(proto) == opset:
        return proto
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(proto, opset)
    except Exception as exc:
        raise ExportFailed(
            f"the exporter wrote opset {file_opset(proto)} and onnx cannot convert it to opset {opset}: {one_line(exc)}"
        ) from exc
    if file_opset(converted) != opset:
        raise ExportFailed(f"the exporter wrote opset {file_opset(proto)}, not {opset}")
    return converted


def read_metadata(path) -> dict:
    """The metadata_props of an ONNX file, JSON-decoded."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: json.loads(p.value) for p in model.metadata_props}
