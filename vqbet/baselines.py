"""Baselines with the policy interface (`forward(batch) -> (loss, metrics)`, `reset`,
`select_action`, `predict_action_chunk`, `save_pretrained` / `from_pretrained`):

- MLPPolicy: behaviour cloning by MSE regression of the action chunk. Unimodal: where the
  demonstrations hold several modes it predicts their average.
- BeT: `make_bet(...)`, a VQBeTPolicy whose tokenizer is k-means bins (vqbet.kmeans_tokenizer).

`load_policy(path)` loads any of them from a checkpoint folder.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from vqbet.acting import ChunkActing, check_relative_to, to_absolute, to_relative
from vqbet.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_state_strict,
    read_json,
    read_tensors,
    write_folder,
)
from vqbet.kmeans_tokenizer import KMeansTokenizer, KMeansTokenizerConfig
from vqbet.normalize import Normalizer
from vqbet.policy import VQBeTConfig, VQBeTPolicy
from vqbet.tokenizer import mlp

MLP_MODEL_TYPE = "vqbet.MLPPolicy"


@dataclass
class MLPConfig:
    """Everything that defines an MLPPolicy; saved in config.json."""

    obs_dim: int = 2
    """D: size of one observation."""
    action_dim: int = 2
    """A: size of one action."""
    obs_window: int = 5
    """To: observations the MLP sees (flattened)."""
    action_chunk: int = 5
    """Ta: actions predicted per step."""
    hidden: int = 256
    """Width of the hidden layers."""
    depth: int = 3
    """Hidden layers."""
    execution: str = "queue"
    """"queue" or "ensemble" (see VQBeTConfig)."""
    ensemble_decay: float = 0.0
    """Ensemble weights exp(-decay * k)."""
    obs_normalization: str = "meanstd"
    """"meanstd" or "minmax"."""
    action_relative_to: list[int] = dataclasses.field(default_factory=list)
    """Per action dim, the observation index it is relative to (see VQBeTConfig); empty: absolute."""

    def __post_init__(self) -> None:
        for name in ("obs_dim", "action_dim", "obs_window", "action_chunk", "hidden"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MLPConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.execution not in ("queue", "ensemble"):
            raise ValueError(f"MLPConfig: execution must be queue|ensemble, got {self.execution!r}")
        self.action_relative_to = check_relative_to(
            self.action_relative_to, self.obs_dim, self.action_dim, "MLPConfig"
        )


class MLPPolicy(ChunkActing, nn.Module):
    """obs window (B, To, D) -> action chunk (B, Ta, A), trained with MSE on normalised actions."""

    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = c = config
        self.obs_normalizer = Normalizer(c.obs_dim, mode=c.obs_normalization)
        self.action_normalizer = Normalizer(c.action_dim)
        self.net = mlp(c.obs_window * c.obs_dim, c.hidden, c.action_chunk * c.action_dim, c.depth)
        self.reset()

    def _predict(self, obs: Tensor) -> Tensor:
        c = self.config
        if obs.ndim != 3 or obs.shape[-1] != c.obs_dim or obs.shape[1] > c.obs_window:
            raise ValueError(
                f"obs must have shape (B, T <= {c.obs_window}, {c.obs_dim}), got {tuple(obs.shape)}"
            )
        if obs.shape[1] < c.obs_window:  # pad the start like the acting history does
            obs = torch.cat([obs[:, :1].expand(-1, c.obs_window - obs.shape[1], -1), obs], dim=1)
        x = self.obs_normalizer.normalize(obs).reshape(obs.shape[0], -1)
        return self.net(x).view(-1, c.action_chunk, c.action_dim)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """MSE between the predicted and demonstrated chunk of the window's last step."""
        relative = to_relative(batch["action"][:, -1], batch["obs"][:, -1], self.config.action_relative_to)
        target = self.action_normalizer.normalize(relative)
        error = (self._predict(batch["obs"]) - target).square()
        mask = batch.get("action_mask")
        if mask is not None:
            m = mask[:, -1, :, None].to(error.dtype)
            loss = (error * m).sum() / error.numel()  # full count: DDP shards average exactly
        else:
            loss = error.mean()
        return loss, {"loss": loss.item(), "mse": loss.item()}

    @torch.no_grad()
    def predict_action_chunk(self, obs_window: Tensor, goal: Tensor | None = None) -> Tensor:
        chunk = self.action_normalizer.unnormalize(self._predict(obs_window))
        return to_absolute(chunk, obs_window[:, -1], self.config.action_relative_to)

    def meta(self) -> dict:
        return {"model_type": MLP_MODEL_TYPE, "format_version": 1, "policy": dataclasses.asdict(self.config)}

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        return write_folder(
            path, json_files={CONFIG_FILE: self.meta()}, tensor_files={WEIGHTS_FILE: self.state_dict()}
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> MLPPolicy:
        meta = read_json(path)
        policy = cls(MLPConfig(**meta["policy"]))
        load_state_strict(policy, read_tensors(path), str(Path(path) / WEIGHTS_FILE))
        return policy.to(map_location).eval()


def make_bet(config: VQBeTConfig, num_bins: int = 64) -> VQBeTPolicy:
    """BeT: VQ-BeT's transformer and offset head over k-means bins of action chunks (one 'layer')."""
    tokenizer = KMeansTokenizer(
        KMeansTokenizerConfig(action_dim=config.action_dim, chunk_size=config.action_chunk, num_bins=num_bins)
    )
    return VQBeTPolicy(dataclasses.replace(config, code_loss_weights=[]), tokenizer)


def load_policy(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", **expect: int
) -> VQBeTPolicy | MLPPolicy:
    """Load any vqbet policy checkpoint folder (VQ-BeT, BeT or MLP), by its config's model_type.
    `expect` (obs_dim=..., action_dim=...) turns a dimension mismatch into a clear error."""
    meta = read_json(path)
    model_type = meta.get("model_type")
    if model_type == MLP_MODEL_TYPE:
        policy = MLPPolicy.from_pretrained(path, map_location)
    elif model_type == "vqbet.VQBeTPolicy":
        policy = VQBeTPolicy.from_pretrained(path, map_location)
    else:
        raise ValueError(f"{Path(path) / CONFIG_FILE}: unknown model_type {model_type!r}")
    for name, want in expect.items():
        have = getattr(policy.config, name)
        if want is not None and have != want:
            raise ValueError(f"{path}: checkpoint has {name}={have}, but the task has {name}={want}")
    return policy
