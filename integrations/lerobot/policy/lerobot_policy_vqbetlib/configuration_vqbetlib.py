"""`--policy.type=vqbetlib`: LeRobot's config for vqbet's policy families.

The fields that shape a run are LeRobot flags (`--policy.family=ar --policy.tokenizer=fast
--policy.n_obs_steps=10 --policy.action_chunk=10`); any other field of vqbet's policy config or
tokenizer config goes in `--policy.policy_options='{n_layer: 6, temperature: 0.3}'` and
`--policy.tokenizer_options='{codebook_size: 32}'` (vqbet.policies / vqbet.tokenizers document
them). Observations and actions reach vqbet raw: vqbet fits its own normalisers in phase 1, so
LeRobot's normaliser steps are identity for every feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lerobot.configs import FeatureType, NormalizationMode, PreTrainedConfig
from lerobot.optim.optimizers import AdamWConfig
from lerobot.optim.schedulers import LRSchedulerConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from lerobot_policy_vqbetlib.batches import ENV_STATE, STATE, camera_name
from vqbet.nn.optim import lr_factor

FAMILIES = ("vqbet", "ar", "mlp")
TOKENIZERS = ("rvq", "fsq", "kmeans", "bins", "fast")
CROP_SHARE = 84 / 96


@LRSchedulerConfig.register_subclass("vqbetlib_cosine")
@dataclass
class VQBetLibSchedulerConfig(LRSchedulerConfig):
    """vqbet's schedule: linear warm-up, then cosine decay to 10% at the run's last step."""

    num_warmup_steps: int = 100

    def build(self, optimizer: Optimizer, num_training_steps: int) -> LambdaLR:
        return LambdaLR(optimizer, lambda step: lr_factor(step, num_training_steps, self.num_warmup_steps))


@PreTrainedConfig.register_subclass("vqbetlib")
@dataclass
class VQBetLibConfig(PreTrainedConfig):
    """vqbet's policies inside LeRobot. Inputs: "observation.state" and any number of cameras
    ("observation.image" / "observation.images.<name>"); output "action"."""

    family: str = "vqbet"
    """vqbet's policy family: "vqbet" (code heads + offset), "ar" (autoregressive tokens + offset), "mlp"."""
    tokenizer: str = "rvq"
    """The action tokenizer of "vqbet"/"ar": rvq, fsq, kmeans (BeT), bins, fast (ar only)."""
    n_obs_steps: int = 5
    """To: observations the policy sees."""
    action_chunk: int = 5
    """Ta: actions predicted per step."""
    execute_steps: int = 0
    """Actions played from each chunk before the next is predicted (0: the whole chunk)."""
    policy_options: dict[str, Any] = field(default_factory=dict)
    """Other fields of the family's vqbet config (e.g. n_layer, temperature, vision)."""
    tokenizer_options: dict[str, Any] = field(default_factory=dict)
    """Fields of the tokenizer's vqbet config (e.g. num_layers, codebook_size)."""
    tokenizer_fit: dict[str, Any] = field(default_factory=lambda: {"steps": 1500, "batch_size": 512})
    """vqbet.tokenizers.TokenizerFitConfig for phase 1 (vqbet's recipe by default)."""
    fit_seed: int = 0
    """Seed of phase 1 (the tokenizer fit), which runs when the policy is built from a dataset."""

    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.IDENTITY,
            "ENV": NormalizationMode.IDENTITY,
            "ACTION": NormalizationMode.IDENTITY,
        }
    )

    optimizer_lr: float = 1e-3
    optimizer_betas: tuple[float, float] = (0.9, 0.999)
    optimizer_weight_decay: float = 0.01
    optimizer_grad_clip_norm: float = 1.0
    scheduler_warmup_steps: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.family not in FAMILIES:
            raise ValueError(f"--policy.family must be one of {FAMILIES}, got {self.family!r}")
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"--policy.tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        for name in ("n_obs_steps", "action_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"--policy.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("policy_options", "tokenizer_options", "tokenizer_fit"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"--policy.{name} must be a mapping, got {getattr(self, name)!r}")
        for key in ("obs_dim", "action_dim", "obs_window", "action_chunk", "execute_steps"):
            if key in self.policy_options:
                raise ValueError(
                    f"--policy.policy_options.{key}: set by the dataset's features or its own flag "
                    "(n_obs_steps, action_chunk, execute_steps), not here"
                )

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            betas=self.optimizer_betas,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> VQBetLibSchedulerConfig:
        return VQBetLibSchedulerConfig(num_warmup_steps=self.scheduler_warmup_steps)

    def validate_features(self) -> None:
        """One state vector, one action vector, any number of same-sized RGB cameras."""
        if self.robot_state_feature is None:
            raise ValueError(
                f"vqbetlib needs '{STATE}' among the input features; got {sorted(self.input_features)}"
            )
        if self.action_feature is None:
            raise ValueError(
                f"vqbetlib needs 'action' among the output features; got {sorted(self.output_features)}"
            )
        for key, feature in self.input_features.items():
            if feature.type is FeatureType.VISUAL:
                camera_name(key)
                if len(feature.shape) != 3 or feature.shape[0] != 3:
                    raise ValueError(
                        f"{key}: vqbetlib takes RGB frames (3, H, W), got {tuple(feature.shape)}"
                    )
            elif feature.type is FeatureType.ENV and key != ENV_STATE:
                raise ValueError(f"{key}: the only environment feature vqbetlib knows is '{ENV_STATE}'")
        vision = self.policy_options.get("vision") or {}
        if not isinstance(vision, dict):
            raise ValueError(f"--policy.policy_options.vision must be a mapping, got {vision!r}")

    @property
    def cameras(self) -> dict[str, str]:
        """LeRobot camera key -> vqbet camera name, in the features' order."""
        return {
            key: camera_name(key) for key, ft in self.input_features.items() if ft.type is FeatureType.VISUAL
        }

    def vqbet_fields(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(policy fields, tokenizer fields) of vqbet's configs for these features."""
        state = self.robot_state_feature
        action = self.action_feature
        fields = {
            **self.policy_options,
            "obs_dim": int(math.prod(state.shape)),
            "action_dim": int(math.prod(action.shape)),
            "obs_window": self.n_obs_steps,
            "action_chunk": self.action_chunk,
            "execute_steps": self.execute_steps,
        }
        cameras = list(self.cameras.values())
        if cameras:
            vision = dict(self.policy_options.get("vision") or {})
            _, height, width = self.input_features[next(iter(self.cameras))].shape
            vision.setdefault("image_size", [int(height), int(width)])
            # vqbet's random crop keeps 84 of 96 pixels; the same share of any other frame size
            vision.setdefault("crop", [round(int(height) * CROP_SHARE), round(int(width) * CROP_SHARE)])
            vision["cameras"] = cameras
            env = self.input_features.get(ENV_STATE)
            if env is not None:
                vision.setdefault("env_state_dim", int(math.prod(env.shape)))
            fields["vision"] = vision
        return fields, {"name": self.tokenizer, **self.tokenizer_options}

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, self.action_chunk))

    @property
    def reward_delta_indices(self) -> None:
        return None
