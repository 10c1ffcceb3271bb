"""`VQBetLibPolicy`: a vqbet policy (`self.policy`, any registered family) behind LeRobot's
`PreTrainedPolicy`.

vqbet trains in two phases. Phase 1 (normalisers and the action tokenizer) runs when LeRobot
builds the policy from a dataset (`make_policy(cfg, ds_meta=...)`, before `lerobot-train`'s loop):
it reads the dataset folder's state and action columns (`ds_meta.root`) and fits on every chunk,
as `scripts/train.py` does. Phase 2 is LeRobot's loop: `forward` is vqbet's loss on LeRobot's
batches, rearranged into vqbet's windows (lerobot_policy_vqbetlib.batches).

Checkpoints: the folder LeRobot saves is a vqbet checkpoint as well. `model.safetensors` holds
vqbet's weights under vqbet's names and `vqbet.json` vqbet's config (LeRobot's is config.json),
so `vqbet.policies.load_policy(<pretrained_model>)` loads it, and `VQBetLibPolicy.from_vqbet`
wraps a checkpoint vqbet trained for LeRobot.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from lerobot.configs import PreTrainedConfig
from lerobot.policies.pretrained import PreTrainedPolicy
from torch import Tensor

from lerobot_policy_vqbetlib.batches import lerobot_to_vqbet, observation
from lerobot_policy_vqbetlib.configuration_vqbetlib import VQBetLibConfig
from vqbet.checks import config_from_dict
from vqbet.data import TrajectoryWindows
from vqbet.data.formats.lerobot import read_lerobot
from vqbet.io.checkpoint import CONFIG_FILE, WEIGHTS_FILE, write_folder
from vqbet.nn.optim import decay_groups
from vqbet.policies import Policy, load_policy, policy_class
from vqbet.policies.base import FOREIGN_META_FILE
from vqbet.tokenizers.fit import TokenizerFitConfig

log = logging.getLogger(__name__)


class VQBetLibPolicy(PreTrainedPolicy):
    """LeRobot's view of a vqbet policy: batches of LeRobot features in, (B, A) actions out."""

    config_class = VQBetLibConfig
    name = "vqbetlib"

    def __init__(
        self,
        config: VQBetLibConfig,
        dataset_stats: Any = None,
        dataset_meta: Any = None,
        policy: Policy | None = None,
        **kwargs: Any,
    ) -> None:
        """A fresh vqbet policy for `config`'s features, fitted (phase 1) on `dataset_meta.root`
        when LeRobot builds it from a dataset; or wrapping `policy`, an already trained one."""
        super().__init__(config)
        config.validate_features()
        self.cameras = config.cameras
        if policy is None:
            fields, tokenizer = config.vqbet_fields()
            policy = policy_class(config.family).build(fields, tokenizer)
            if dataset_meta is not None and not config.pretrained_path:
                self._fit_phase_one(policy, Path(dataset_meta.root))
        self._check_matches(policy)
        self.policy = policy

    def _check_matches(self, policy: Policy) -> None:
        """Refuse a vqbet policy whose shapes differ from the LeRobot features."""
        fields, _ = self.config.vqbet_fields()
        c = policy.config
        for key in ("obs_dim", "action_dim", "obs_window", "action_chunk"):
            if getattr(c, key) != fields[key]:
                raise ValueError(
                    f"the vqbet policy has {key}={getattr(c, key)}, "
                    f"the LeRobot config and features give {fields[key]}"
                )
        if list(c.vision.cameras) != list(self.cameras.values()):
            raise ValueError(
                f"the vqbet policy sees cameras {c.vision.cameras}, "
                f"the LeRobot features hold {list(self.cameras)}"
            )

    def _fit_phase_one(self, policy: Policy, root: Path) -> None:
        data = read_lerobot(root)  # state, action (and env state): no camera is decoded
        windows = TrajectoryWindows(data, self.config.n_obs_steps, self.config.action_chunk)
        fit = config_from_dict(TokenizerFitConfig, self.config.tokenizer_fit, "--policy.tokenizer_fit")
        log.info("vqbetlib phase 1: %s on %d windows of %s", policy.name, len(windows), root)
        summary = policy.fit_statistics(windows, seed=self.config.fit_seed, tokenizer_fit=fit, progress=False)
        policy.freeze_statistics()
        scalars = {k: round(float(v), 6) for k, v in summary.items() if isinstance(v, (int, float))}
        if scalars:
            log.info("vqbetlib phase 1 done: %s", scalars)

    # -- LeRobot's training loop ---------------------------------------------------------
    def get_optim_params(self) -> list[dict]:
        """vqbet's AdamW groups: weight decay on matrices only; the frozen tokenizer is left out."""
        return decay_groups(self.policy, self.config.optimizer_weight_decay)

    def forward(self, batch: dict[str, Any], reduction: str = "mean") -> tuple[Tensor, dict[str, float]]:
        """vqbet's loss on a LeRobot batch ("observation.state" (B, To, D), "action" (B, To+Ta-1, A),
        cameras (B, To, 3, H, W), their `_is_pad` masks)."""
        if reduction != "mean":
            raise ValueError("vqbetlib's loss is a batch mean; per-sample weighting is not supported")
        c = self.config
        loss, metrics = self.policy(lerobot_to_vqbet(batch, c.n_obs_steps, c.action_chunk, self.cameras))
        return loss, metrics

    # -- acting -----------------------------------------------------------------------------
    def reset(self) -> None:
        self.policy.reset()

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs: Any) -> Tensor:
        """One step of B environments: "observation.state" (B, D), cameras (B, 3, H, W) float ->
        (B, A). vqbet keeps the observation window and the chunk being played."""
        return self.policy.select_action(observation(batch, self.cameras))

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], **kwargs: Any) -> Tensor:
        """A window "observation.state" (B, T <= To, D) (cameras (B, T, 3, H, W)), or one step
        (B, D) -> the chunk (B, Ta, A) for its last step."""
        obs = observation(batch, self.cameras)
        state = obs["state"] if isinstance(obs, dict) else obs
        if state.ndim == 2:  # one step: a window of one
            obs = {k: v[:, None] for k, v in obs.items()} if isinstance(obs, dict) else obs[:, None]
        return self.policy.predict_action_chunk(obs)

    # -- checkpoints --------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """LeRobot's config.json beside vqbet's checkpoint (vqbet.json, model.safetensors under
        vqbet's names, the tokenizer's extra files), written atomically."""
        inner = self.policy
        weights = inner.state_dict() if state_dict is None else _unprefixed(state_dict)
        write_folder(
            save_directory,
            json_files={FOREIGN_META_FILE: inner.meta(), **inner.extra_files()},
            tensor_files={WEIGHTS_FILE: weights},
            other_files={CONFIG_FILE: lambda file: self.config._save_pretrained(file.parent)},
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_name_or_path: str | os.PathLike,
        *,
        config: PreTrainedConfig | None = None,
        revision: str | None = None,
        **kwargs: Any,
    ) -> VQBetLibPolicy:
        """A folder this plug-in saved (or a Hub repo holding one): vqbet loads the weights strictly,
        so a missing or misshapen tensor is an error, never a silently random layer."""
        folder = Path(pretrained_name_or_path)
        if not folder.is_dir():
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(str(pretrained_name_or_path), revision=revision))
        if config is None:
            config = PreTrainedConfig.from_pretrained(folder)
        if not isinstance(config, VQBetLibConfig):
            raise ValueError(f"{folder / CONFIG_FILE}: a {config.type!r} policy, not vqbetlib")
        device = config.device or "cpu"
        policy = cls(config, policy=load_policy(folder, map_location=device))
        return policy.to(device).eval()

    @classmethod
    def from_vqbet(cls, path: str | os.PathLike, config: VQBetLibConfig) -> VQBetLibPolicy:
        """Wrap a checkpoint vqbet trained (`scripts/train.py`) for LeRobot; `config` carries the
        LeRobot features it acts on (their shapes must match the checkpoint's)."""
        return cls(config, policy=load_policy(path))


def _unprefixed(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """A state dict of this module (keys "policy.<name>") under vqbet's own names."""
    return {key.removeprefix("policy."): value for key, value in state_dict.items()}
