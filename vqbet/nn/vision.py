"""Camera images -> feature vectors, learnt end to end with the policy.

`VisionConfig` names the cameras and the encoder; `ImageEncoders` holds one encoder per camera (or
one shared by all) and turns `{camera: (..., H, W, 3) uint8}` into features `(..., cameras x
features)`. Inside: crop (a random crop per image in training mode, the centre crop in eval mode:
the augmentation of Diffusion Policy and VQ-BeT's image tasks), scale to [0, 1] and normalise
(inside the model, so a checkpoint acts on raw frames), optionally average-pool by `downsample`,
then the encoder:

- "conv" (default): four 3x3 convolutions (32-32-64-64 channels, stride 2, 2, 2, 1: an 84 x 84
  crop ends as 11 x 11) with GroupNorm and ReLU, spatial-softmax pooling (the expected image
  coordinates of each channel) and a linear map to `features`; ~75k parameters and ~12M
  multiply-adds per image, sized for 2 CPU cores.
- "resnet18": torchvision's ResNet-18 without its pooling and classifier, BatchNorm replaced by
  GroupNorm (16 groups; batch statistics and small or DDP-sharded batches do not mix), spatial-softmax
  pooling and a linear map. Needs `pip install "vqbet[vision]"` (torchvision). Random
  initialisation; `weights` may name a local file of torchvision's ResNet-18 state dict (its
  BatchNorm weights are dropped): nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class VisionConfig:
    """The cameras a policy sees and how it encodes them; part of the policy's config.json."""

    cameras: list[str] = field(default_factory=list)
    """Observation keys of the camera images, each (H, W, 3) uint8; empty: no images."""
    image_size: list[int] = field(default_factory=lambda: [96, 96])
    """(H, W) of the images the policy takes (the env's and the dataset's)."""
    crop: list[int] = field(default_factory=lambda: [84, 84])
    """(h, w) crop: random in training, centred when acting."""
    downsample: int = 1
    """Average-pool the crop by this factor before the encoder (2: an 84 x 84 crop is encoded at
    42 x 42, a quarter of the multiply-adds; the crop must divide by it)."""
    encoder: Literal["conv", "resnet18"] = "conv"
    """The image encoder (see vqbet.nn.vision)."""
    features: int = 64
    """Features per camera."""
    shared: bool = False
    """One encoder for all cameras (else one per camera)."""
    weights: str = ""
    """For "resnet18": a local file of torchvision ResNet-18 weights to start from ("" = random)."""
    env_state_weight: float = 0.0
    """> 0: a linear head learns to predict the dataset's `env_state` (the simulator's full state,
    normalised; e.g. PushT's T pose) at every window step from the camera features, and its MSE
    times this weight joins the training loss: a direct signal for the encoder to find the objects.
    Training only: acting never needs the env state. The dataset must hold env_state."""
    env_state_dim: int = 0
    """S, the size of env_state (the training pipeline sets it from the dataset)."""

    def __post_init__(self) -> None:
        self.cameras = [str(c) for c in self.cameras]
        self.image_size = [int(x) for x in self.image_size]
        self.crop = [int(x) for x in self.crop]
        if len(set(self.cameras)) != len(self.cameras) or "state" in self.cameras:
            raise ValueError(f"vision.cameras must be distinct names other than 'state', got {self.cameras}")
        if len(self.image_size) != 2 or len(self.crop) != 2 or min(self.crop) < 4:
            raise ValueError(
                f"vision.image_size and vision.crop must be [H, W] with crops >= 4, got {self.image_size} "
                f"and {self.crop}"
            )
        if any(c > s for c, s in zip(self.crop, self.image_size, strict=True)):
            raise ValueError(f"vision.crop {self.crop} is larger than vision.image_size {self.image_size}")
        if self.encoder not in ("conv", "resnet18"):
            raise ValueError(f"vision.encoder must be conv or resnet18, got {self.encoder!r}")
        if self.features < 1:
            raise ValueError(f"vision.features must be >= 1, got {self.features}")
        if self.env_state_weight < 0 or (self.env_state_weight > 0 and self.env_state_dim < 1):
            raise ValueError(
                f"vision.env_state_weight must be >= 0, and > 0 needs env_state_dim >= 1, got "
                f"{self.env_state_weight} and {self.env_state_dim}"
            )
        if self.env_state_weight > 0 and not self.cameras:
            raise ValueError(
                "vision.env_state_weight > 0 predicts env_state from cameras: name vision.cameras"
            )
        if isinstance(self.downsample, bool) or not isinstance(self.downsample, int) or self.downsample < 1:
            raise ValueError(f"vision.downsample must be an integer >= 1, got {self.downsample!r}")
        if any(c % self.downsample or c // self.downsample < 4 for c in self.crop):
            raise ValueError(
                f"vision.crop {self.crop} must divide by vision.downsample ({self.downsample}) into "
                "sides >= 4"
            )

    @property
    def feature_dim(self) -> int:
        """Features all cameras give together."""
        return len(self.cameras) * self.features


class SpatialSoftmax(nn.Module):
    """(N, C, H, W) -> (N, 2C): per channel the expected (x, y) in [-1, 1] under a softmax over
    its pixels (Levine et al. 2016): where a feature is, which a global average would lose."""

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        attention = F.softmax(x.flatten(2).float(), dim=-1).view(n, c, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device)
        return torch.cat([(attention.sum(2) * xs).sum(-1), (attention.sum(3) * ys).sum(-1)], dim=-1)


def conv_encoder(features: int) -> nn.Module:
    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.GroupNorm(8, cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 32, 2),
        *block(32, 32, 2),
        *block(32, 64, 2),
        *block(64, 64, 1),
        SpatialSoftmax(),
        nn.Linear(128, features),
    )


def resnet18_encoder(features: int, weights: str = "") -> nn.Module:
    try:
        import torchvision
    except ImportError:
        raise ImportError(
            'vision.encoder="resnet18" needs torchvision: pip install "vqbet[vision]"'
        ) from None
    net = torchvision.models.resnet18(weights=None, norm_layer=lambda c: nn.GroupNorm(16, c))
    if weights:
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"vision.weights: {weights} is not a file")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        own = net.state_dict()
        kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and "bn" not in k}
        if not any(k.startswith("conv1") for k in kept):
            raise ValueError(f"vision.weights: {weights} holds no ResNet-18 convolution weights")
        net.load_state_dict(kept, strict=False)
    trunk = nn.Sequential(*list(net.children())[:-2])  # no average pooling, no classifier
    return nn.Sequential(trunk, SpatialSoftmax(), nn.Linear(2 * 512, features))


def crop(images: Tensor, size: tuple[int, int], random: bool) -> Tensor:
    """(N, H, W, C) -> (N, h, w, C): an independent random window per image, or the centre one."""
    n, height, width = images.shape[:3]
    h, w = size
    if (h, w) == (height, width):
        return images
    if not random:
        top, left = (height - h) // 2, (width - w) // 2
        return images[:, top : top + h, left : left + w]
    # Offsets drawn on the CPU (no device sync for .tolist()) and one slice per image: a single
    # stack copies the windows, far cheaper on CPU than a gather over (N, h, w) index grids.
    top = torch.randint(0, height - h + 1, (n,)).tolist()
    left = torch.randint(0, width - w + 1, (n,)).tolist()
    return torch.stack(
        [images[i, t : t + h, s : s + w] for i, (t, s) in enumerate(zip(top, left, strict=True))]
    )


class ImageEncoders(nn.Module):
    """{camera: (..., H, W, 3) uint8} -> (..., cameras x features) float, cameras in config order."""

    def __init__(self, config: VisionConfig) -> None:
        super().__init__()
        self.config = config

        def make() -> nn.Module:
            if config.encoder == "resnet18":
                return resnet18_encoder(config.features, config.weights)
            return conv_encoder(config.features)

        names = ["shared"] if config.shared else config.cameras
        self.encoders = nn.ModuleDict({name: make() for name in names})
        mean, std = (
            (IMAGENET_MEAN, IMAGENET_STD) if config.encoder == "resnet18" else ((0.5,) * 3, (0.5,) * 3)
        )
        # (x / 255 - mean) / std as one multiply-add straight from uint8: x * scale + shift.
        std_t = torch.tensor(std).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t), persistent=False)
        self.register_buffer("shift", -torch.tensor(mean).view(1, 3, 1, 1) / std_t, persistent=False)

    def pixels(self, images: Tensor) -> Tensor:
        """(N, H, W, 3) uint8 -> (N, 3, h / d, w / d) float: cropped (random in training mode, else
        centred), normalised and average-pooled by d = `downsample`; channels-last in memory, which
        the convolutions take as is."""
        x = crop(images, (self.config.crop[0], self.config.crop[1]), random=self.training).permute(0, 3, 1, 2)
        d = self.config.downsample
        if d > 1:  # pooling first: the normalisation is affine, and runs on d * d times fewer values
            x = F.avg_pool2d(x.float(), d)
        return torch.addcmul(self.shift, x, self.scale)

    def forward(self, images: dict[str, Tensor]) -> Tensor:
        c = self.config
        out = []
        for camera in c.cameras:
            x = images[camera]
            lead = x.shape[:-3]
            x = self.pixels(x.reshape(-1, *x.shape[-3:]))
            encoder = self.encoders["shared" if c.shared else camera]
            out.append(encoder(x).view(*lead, c.features))
        return torch.cat(out, dim=-1)
