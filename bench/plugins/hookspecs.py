"""The hooks a cnnbench plugin can implement. Markers and specs only."""

import pluggy

hookspec = pluggy.HookspecMarker("cnnbench")
hookimpl = pluggy.HookimplMarker("cnnbench")


@hookspec
def register_architectures(register):
    """Register CNN architecture families.

    ``register`` is a callable; call it once per family::

        register(
            name,               # str: unique name, e.g. "cnn_vgg" ([a-z0-9_.-]+)
            factory,            # callable(input_shape, num_classes, **params) -> torch.nn.Module
            variants=...,       # dict: parameter -> list of values (their product is the space),
                                #   or a list of such dicts (the union of their products)
            description=...,    # str: one line
            defaults=None,      # optional dict of training hyperparameters for this family:
                                #   batch_size, lr, epochs, optimizer, weight_decay, momentum
            default_variants=None,  # optional list of dicts: the subset run by default
        )

    ``input_shape`` is ``(channels, height, width)``; the factory must build a model for any shape the
    datasets produce (1 or 3 channels, 8x8 and up), for example by computing the flattened size with a
    dummy forward pass. The model returns logits of shape ``(batch, num_classes)``.
    """


@hookspec
def register_datasets(register):
    """Register datasets.

    ``register`` is a callable; call it once per dataset::

        register(
            name,               # str: unique name, e.g. "mnist" ([a-z0-9_.-]+)
            load,               # callable(request: bench.Request) -> bench.Dataset
            description=...,    # str: one line
            input_shape=None,   # (C, H, W) when known without loading (None: depends on the argument)
            num_classes=None,   # int when known without loading
            takes_argument=False,  # True: used as "name:ARGUMENT" (e.g. imagefolder:PATH)
        )

    ``load`` receives the request (argument, data directory, download flag, image size) and returns the whole
    dataset as uint8 tensors; a missing or damaged file should raise ``bench.BenchError`` with one
    line naming the file and how to get it.
    """


@hookspec
def register_engines(register):
    """Register inference engines: what runs a trial's verified model for its latency and accuracy figures.

    ``register`` is a callable; call it once per engine::

        register(
            name,               # str: unique name, e.g. "openvino" ([a-z0-9_.-]+)
            engine,             # an object with devices(), precisions(model), load(model, device, precision,
                                #   threads, settings, example) and optionally prepare(model, precision)
            description=...,    # str: one line
        )

    ``devices()`` returns ``{device: None or the reason it cannot run here}`` (devices as `--providers` names them:
    cpu, cuda, ...); ``precisions(model)`` ``{precision: None or the reason}`` for a ``bench.EngineModel``;
    ``load`` returns a session with ``bind(x)`` (a function running one inference on the float32 batch ``x``),
    ``predict(x)`` (logits as a numpy array), ``method`` (a dict recorded beside its figures) and optionally
    ``sync()`` and ``close()``. Raise ``bench.Unavailable`` with one line when it cannot run something;
    any other exception is recorded as that measurement's failure. An engine with ``default = False`` runs only
    when named (`--engines NAME`). cnnbench times every engine under one protocol (bench.runtime.protocol).
    """
