"""Small building blocks shared by architecture plugins (built-in and third-party)."""

from __future__ import annotations

import torch
from torch import nn


def flat_features(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Number of features ``features`` produces per image once flattened, found by a dummy forward pass
    so that heads fit any input size."""
    was_training = features.training
    features.eval()  # batch norm cannot run in training mode on one 1x1 sample
    with torch.no_grad():
        n = features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
    features.train(was_training)
    return n


def conv_stage(in_channels: int, out_channels: int, kernel_size: int = 3, convs: int = 1) -> list[nn.Module]:
    """``convs`` x [conv kxk (same padding) + ReLU], then a 2x2 max-pool that keeps a 1x1 map at 1x1
    (ceil_mode), so deep stacks still build on 8x8 inputs."""
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(2, ceil_mode=True))
    return layers


def mlp_head(
    in_features: int,
    hidden: tuple[int, ...],
    num_classes: int,
    dropout: float = 0.0,
    dropout_at: set[int] | None = None,
) -> nn.Sequential:
    """Linear layers ``in_features -> hidden... -> num_classes`` with ReLU between them. ``dropout_at``
    lists before which linear layers (0 = the first) a dropout of rate ``dropout`` is placed."""
    sizes = [in_features, *hidden, num_classes]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        if dropout > 0 and i in (dropout_at or set()):
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class FlipAverage(nn.Module):
    """Test-time augmentation inside the model: in eval mode, the average of the logits of the image and of its
    mirror image (training is unchanged). Exported to ONNX with the model, so every figure measured on the file
    (accuracy, latency: two forward passes) includes it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.net(x)
        return (self.net(x) + self.net(torch.flip(x, dims=[3]))) / 2


class FlipTranslateAverage(FlipAverage):
    """airbench's six-view test-time augmentation: half the flip average of the image, plus a quarter each of
    the flip averages of the image shifted one pixel up-left and one down-right (reflection padding). Six
    forward passes per image; training is unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.net(x)
        padded = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = super().forward(padded[:, :, :-2, :-2]) + super().forward(padded[:, :, 2:, 2:])
        return super().forward(x) / 2 + shifted / 4


class PatchWhitening(nn.Conv2d):
    """A first convolution that whitens the image's k x k patches (airbench's stem): its filters are the
    eigenvectors of the patch covariance of the training images, each scaled by 1/sqrt(eigenvalue + eps), and
    their negatives (2 * channels * k * k maps, no padding). They are fitted by ``init_from_data`` before
    training and then stay fixed; the bias trains. Exported as the plain convolution it is."""

    def __init__(self, in_channels: int, kernel_size: int = 2, eps: float = 5e-4):
        super().__init__(in_channels, 2 * in_channels * kernel_size**2, kernel_size, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)
        nn.init.zeros_(self.bias)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Fit the filters to ``images`` (N, C, H, W), normalized as the model sees them."""
        c, (kh, kw) = images.shape[1], self.kernel_size
        patches = images.float().unfold(2, kh, 1).unfold(3, kw, 1)  # N, C, H', W', kh, kw
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)  # each in the weights' (C, kh, kw) order
        covariance = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())  # ascending
        filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + self.eps)[:, None]
        filters = filters.flip(0).reshape(-1, c, kh, kw).to(self.weight)  # the strongest directions first
        self.weight.copy_(torch.cat([filters, -filters]))


class Scale(nn.Module):
    """Multiplies its input by a constant (airbench scales its logits by 1/9: a softer softmax early on)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


def data_initialized(model: nn.Module) -> list[nn.Module]:
    """The submodules of ``model`` with an ``init_from_data(images)`` method: the trainer calls each, before
    the first epoch, with the first DATA_INIT_IMAGES training images, normalized and unaugmented."""
    return [m for m in model.modules() if callable(getattr(m, "init_from_data", None))]


DATA_INIT_IMAGES = 5000  # as airbench fits its whitening stem
