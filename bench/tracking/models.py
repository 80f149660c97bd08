"""A trial's ONNX files as MLflow logged models (`mlflow.onnx.log_model`), each with its signature read from the
file (input and output names, element types, shapes with a free batch), so that the model registry and `mlflow
models serve -m models:/...` take them as they are: the fp32 export as ``onnx-fp32``, its variants as ``onnx-int8``,
``onnx-fp16``. Pip requirements are given (the installed onnx and onnxruntime), not inferred, which would load the
model in a subprocess."""

from __future__ import annotations

import contextlib
from pathlib import Path


def signature(model):
    """The MLflow signature of an ONNX model: a tensor spec per graph input and output (free dimensions: -1)."""
    import numpy as np
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec
    from onnx.helper import tensor_dtype_to_np_dtype

    initializers = {i.name for i in model.graph.initializer}

    def specs(values) -> Schema:
        out = []
        for v in values:
            if v.name in initializers:
                continue
            tensor = v.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            out.append(TensorSpec(np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)), shape, v.name))
        return Schema(out)

    return ModelSignature(inputs=specs(model.graph.input), outputs=specs(model.graph.output))


def model_name(entry: dict) -> str:
    """The logged model's name for an export (fp32) or a variant row (its precision)."""
    from bench.core.status import Precision

    return f"onnx-{entry.get('precision') or Precision.FP32}"


@contextlib.contextmanager
def _active(uri: str, run_id: str):
    """MLflow's fluent API pointed at ``uri`` and run ``run_id`` for the block, then as the caller had it (a run the
    caller has open stays theirs: this one is nested in it for the block)."""
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None):
            yield mlflow
    finally:
        mlflow.set_tracking_uri(before)


def log_onnx_model(uri: str, run_id: str, entry: dict) -> None:
    """Log the ONNX file of ``entry`` (an export or a variant record with its ``path``) to MLflow run ``run_id``."""
    import mlflow.onnx
    import onnx
    import onnxruntime

    model = onnx.load(Path(entry["path"]))
    requirements = [f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"]
    with _active(uri, run_id):
        mlflow.onnx.log_model(
            model,
            name=model_name(entry),
            signature=signature(model),
            pip_requirements=requirements,
            save_as_external_data=False,
        )
