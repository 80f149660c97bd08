"""Starting from trained weights (`--weights`), freezing layers (`--freeze`) and the head's own learning rate
(`--head-lr`): fine-tuning, the common real case.

The weights are a file (a cnnbench checkpoint, a state dict, or a dict holding one under 'state_dict' or 'model')
or a stored trial (`RUN/t003`). The plan records them as ``PATH#sha256=HEX``: the file is checked against that hash
whenever a trial loads it (a resume after the file changed is refused), and the ONNX metadata names both. Loading
maps what matches by name and shape; the logits layer keeps its initialization when the classes differ (a cnnbench
checkpoint records its classes; a plain state dict's logits layer is taken when its shape fits), and so does any
tensor the file lacks; the first convolution of weights trained on another number of channels (grey against RGB) is
adapted as timm's ``in_chans`` does (adapt_channels); a shape clash anywhere else is an error. The head is the
logits layer: the last module whose weight has one row per class. `--freeze backbone` trains only the head,
`--freeze N` all but the first N layers with parameters; frozen batch-norm layers keep their statistics (evaluation
mode while training)."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from bench.core.errors import BenchError, UsageError
from bench.core.files import sha256_of
from bench.options.option import invalid

MARK = "#sha256="
STORED = re.compile(r"(?P<run>[^/\s]+)/t?(?P<idx>\d+)")  # RUN/t003 or RUN/3


def resolve(text: str, store_path=None) -> str:
    """``--weights`` as the plan records it: ``ABSOLUTE_PATH#sha256=HEX`` (a stored trial's checkpoint for
    RUN/tNNN). Already resolved text is checked against its file."""
    if MARK in text:
        path, digest = text.split(MARK, 1)
        _checked(Path(path), digest)
        return text
    path = Path(text).expanduser()
    if not path.is_file() and (m := STORED.fullmatch(text)):
        path = _stored(m.group("run"), int(m.group("idx")), store_path, text)
    if not path.is_file():
        raise invalid("weights", text, why="is neither a file nor a stored trial (RUN/tNNN)")
    return f"{path.resolve()}{MARK}{sha256_of(path)}"


def _stored(run_ref: str, idx: int, store_path, text: str) -> Path:
    from bench.store import Store, default_path

    path = Path(store_path) if store_path is not None else default_path()
    if not path.is_file():
        raise invalid("weights", text, why=f"names a stored trial, and there is no store at {path}")
    with Store(path, readonly=True) as store:
        run = store.run(None if run_ref == "latest" else run_ref)
        trial = next((t for t in store.trials(run["id"]) if t["idx"] == idx), None)
        checkpoint = store.checkpoint_path(trial) if trial else None
        if checkpoint is None or not checkpoint.is_file():
            raise invalid("weights", text, why=f"run {run['id']} has no checkpoint of trial {idx}")
        return checkpoint


def _checked(path: Path, digest: str) -> bytes:
    """The file's bytes, read once, if they still hash to ``digest``."""
    try:
        data = path.read_bytes()
    except OSError:
        raise BenchError(f"the weights {path} the run started from are gone") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise BenchError(f"the weights {path} changed since the run was planned (SHA-256 differs)")
    return data


def described(recorded: str | None) -> dict | None:
    """The recorded weights as the ONNX metadata and reports name them: file and SHA-256."""
    if not recorded:
        return None
    path, _, digest = recorded.partition(MARK)
    return {"file": path, "sha256": digest}


def read(recorded: str) -> tuple[dict, list | None]:
    """The state dict in the recorded weights file (checked against its hash; read without running code), and the
    classes it was trained on where the file says (a cnnbench checkpoint)."""
    path, digest = recorded.split(MARK, 1)
    data = _checked(Path(path), digest)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchError(f"the weights {path} are not a readable state dict: {exc.__class__.__name__}") from None
    meta = obj.get("meta") if isinstance(obj, dict) and isinstance(obj.get("meta"), dict) else {}
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BenchError(f"the weights {path} hold no state dict (a dict of tensors)")
    if not all(isinstance(k, str) for k in obj):
        odd = next(k for k in obj if not isinstance(k, str))
        raise BenchError(f"the weights {path} hold no state dict: its keys are tensor names, not {odd!r}")
    return obj, meta.get("classes")


def head_name(model: nn.Module, num_classes: int) -> str | None:
    """The logits layer: the last module whose own weight has ``num_classes`` rows."""
    found = None
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dim() >= 2 and weight.shape[0] == num_classes:
            found = name
    return found


@dataclass
class Loaded:
    source: str
    loaded: int = 0
    skipped: list[str] = field(default_factory=list)  # in the file, not in the model
    reinitialized: list[str] = field(default_factory=list)  # in the model, not taken from the file
    adapted: list[str] = field(default_factory=list)  # the first convolution, for another number of channels

    def line(self) -> str:
        path, _, digest = self.source.partition(MARK)
        parts = [f"loaded {self.loaded} tensors"]
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} the model lacks ({_few(self.skipped)})")
        if self.reinitialized:
            parts.append(f"re-initialized {len(self.reinitialized)} ({_few(self.reinitialized)})")
        if self.adapted:
            parts.append(f"adapted {self.adapted[0]} by timm's in_chans rule")
        return f"weights {Path(path).name} (sha256 {digest[:12]}): " + ", ".join(parts)


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def load_into(model: nn.Module, recorded: str, classes: list) -> Loaded:
    """Load the recorded weights into ``model`` (for ``classes``) where names and shapes match (see the module's
    docstring)."""
    state, trained_on = read(recorded)
    own = model.state_dict()
    head = head_name(model, len(classes))
    other_classes = trained_on is not None and list(trained_on) != list(classes)
    taken, out = {}, Loaded(recorded)
    for key, value in state.items():
        in_head = head is not None and key.startswith(head + ".")
        if key not in own:
            out.skipped.append(key)
        elif in_head and (other_classes or own[key].shape != value.shape):
            continue  # the logits layer of other classes: the model's own initialization
        elif own[key].shape == value.shape:
            taken[key] = value
        elif not out.adapted and _input_channels_differ(own[key], value):
            taken[key] = adapt_channels(value, own[key].shape[1])
            out.adapted.append(f"{key} ({value.shape[1]} -> {own[key].shape[1]} input channels)")
        else:
            raise BenchError(
                f"the weights {Path(recorded.split(MARK)[0]).name} do not fit: {key} is "
                f"{tuple(value.shape)} there, {tuple(own[key].shape)} in the model"
            )
    out.reinitialized = [k for k in own if k not in taken]
    out.loaded = len(taken)
    if not taken:
        raise BenchError(f"the weights {Path(recorded.split(MARK)[0]).name} share no tensor with the model")
    model.load_state_dict(taken, strict=False)
    return out


def _input_channels_differ(own: torch.Tensor, value: torch.Tensor) -> bool:
    """A convolution's weight that differs from the model's only in its input channels (out, in, kh, kw)."""
    return own.dim() == value.dim() == 4 and own.shape[1] != value.shape[1] and own.shape[::2] == value.shape[::2]


def adapt_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """A first convolution's weight for ``channels`` input channels, as timm's ``in_chans`` adapts pretrained stems:
    to one channel, the sum over the file's (a grey image is what their sum sees); to more, the file's channels
    repeated in turn and scaled by have/wanted, so that an image whose channels are equal gives what it gave before
    (grayscale weights start an RGB model)."""
    have = weight.shape[1]
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // have)
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (have / channels)


def freeze(model: nn.Module, how: str, num_classes: int) -> int:
    """Freeze per ``--freeze`` (none, backbone, or N layers); the number of parameters left to train."""
    if how == "backbone":
        head = head_name(model, num_classes)
        if head is None:
            raise BenchError("--freeze backbone: the model has no logits layer (a weight with one row per class)")
        keep = {id(p) for p in model.get_submodule(head).parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
    elif how != "none":
        layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
        n = int(how)
        if n >= len(layers):
            raise UsageError(f"Invalid value for '--freeze': '{how}' (the model has {len(layers)} layers with weights)")
        for m in layers[:n]:
            for p in m.parameters(recurse=False):
                p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def keep_frozen(model: nn.Module) -> None:
    """Frozen batch-norm layers in evaluation mode (after ``model.train()``): their statistics stay the file's."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            own = list(m.parameters(recurse=False))
            if own and not any(p.requires_grad for p in own):
                m.eval()


def head_parameters(model: nn.Module, num_classes: int) -> set[int]:
    """The ids of the logits layer's parameters (their learning rate is --head-lr times --lr)."""
    head = head_name(model, num_classes)
    return {id(p) for p in model.get_submodule(head).parameters()} if head is not None else set()
