"""MLP behaviour cloning: MSE regression of the action chunk from the flattened observation window.
Unimodal: where the demonstrations hold several modes it predicts their average (the baseline that
shows why VQ-BeT exists)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from vqbet.data import TrajectoryWindows
from vqbet.nn.mlp import mlp
from vqbet.nn.normalize import Normalizer
from vqbet.policies.acting import Observation, state_of, to_absolute, to_relative
from vqbet.policies.base import Policy, PolicyConfig, masked_mean
from vqbet.policies.registry import register_policy


@dataclass
class MLPConfig(PolicyConfig):
    """Everything that defines an MLPPolicy; saved in config.json."""

    hidden: int = 256
    """Width of the hidden layers."""
    depth: int = 3
    """Hidden layers."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_positive("hidden")


@register_policy("mlp")
class MLPPolicy(Policy):
    """obs window (B, To, D) -> action chunk (B, Ta, A), trained with MSE on normalised actions."""

    config_class = MLPConfig
    config: MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        c = config
        self.action_normalizer = Normalizer(c.action_dim)
        self.net = mlp(c.obs_window * self.obs_features, c.hidden, c.action_chunk * c.action_dim, c.depth)

    @property
    def network(self) -> nn.Module:
        return self.net

    def fit_statistics(self, windows: TrajectoryWindows, **options: Any) -> dict[str, Any]:
        """Observation normaliser, and the action normaliser on every chunk (in the policy's frame);
        no other option applies."""
        super().fit_statistics(windows)
        self.action_normalizer.fit(self.chunks_in_frame(windows).reshape(-1, self.config.action_dim))
        return {}

    def _normalised_chunk(self, x: Tensor) -> Tensor:
        """Observed steps x (B, T, obs_features) (`observe`'s output) -> normalised chunk (B, Ta, A)."""
        c = self.config
        if x.shape[1] < c.obs_window:  # pad the start like the acting history does
            x = torch.cat([x[:, :1].expand(-1, c.obs_window - x.shape[1], -1), x], dim=1)
        return self.net(x.reshape(x.shape[0], -1)).view(-1, c.action_chunk, c.action_dim)

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """MSE between the predicted and demonstrated chunk of the window's last step."""
        obs, action = self.check_batch(batch)
        relative = to_relative(action[:, -1], state_of(obs)[:, -1], self.config.action_relative_to)
        observed = self.observe(obs)
        error = (self._normalised_chunk(observed) - self.action_normalizer.normalize(relative)).square()
        mask = batch.get("action_mask")
        loss = masked_mean(error, None if mask is None else mask[:, -1])
        metrics = {"loss": loss.item(), "mse": loss.item()}
        return self.with_env_state_loss(loss, observed, batch, metrics), metrics

    def _predict_chunk(self, obs: Observation, goal: Tensor | None) -> Tensor:
        chunk = self.action_normalizer.unnormalize(self._normalised_chunk(self.observe(obs)))
        return to_absolute(chunk, state_of(obs)[:, -1], self.config.action_relative_to)
