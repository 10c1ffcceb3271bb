"""The interface every policy family implements, the config fields they share, and checkpoints.

A family subclasses `PolicyConfig` and `Policy`, registers itself (`@register_policy("name")`) and
writes four things: `network` (the module compile acts on), `fit_statistics` (phase 1, on top of
the observation normaliser fitted here), `forward(batch) -> (loss, metrics)` and
`_predict_chunk(obs (B, T, D)) -> (B, Ta, A)`. Acting (`select_action`/`reset`), input checks and
`save_pretrained`/`from_pretrained` are the same for every family and live here.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqbet.checks import check_literals, config_from_dict
from vqbet.data import EpisodeData, TrajectoryWindows
from vqbet.io.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_state_strict,
    read_json,
    read_tensors,
    write_folder,
)
from vqbet.nn.normalize import Normalizer
from vqbet.nn.vision import ImageEncoders, VisionConfig
from vqbet.policies.acting import (
    ChunkActing,
    Observation,
    check_relative_to,
    state_of,
    to_relative,
)
from vqbet.policies.inputs import InputSpec, check_finite, check_inputs
from vqbet.policies.registry import policy_class

MODEL_TYPE = "vqbet.policy"
FORMAT_VERSION = 2
FOREIGN_META_FILE = "vqbet.json"
"""Where a checkpoint folder whose config.json belongs to another framework (a LeRobot plug-in
checkpoint) keeps what vqbet's config.json would hold; the weights keep vqbet's names."""


@dataclass
class PolicyConfig:
    """The fields every policy family has; saved in config.json."""

    obs_dim: int = 2
    """D: size of one observation."""
    action_dim: int = 2
    """A: size of one action."""
    obs_window: int = 5
    """To: observations the policy sees (the current one and To-1 before it)."""
    action_chunk: int = 5
    """Ta: actions predicted per step."""
    execution: Literal["queue", "ensemble"] = "queue"
    """"queue": predict a chunk and play it out open loop; "ensemble": predict every step and average
    the overlapping chunk predictions."""
    execute_steps: int = 0
    """"queue": actions played from each chunk before the next is predicted (receding horizon, as
    Diffusion Policy's n_action_steps); 0 plays the whole chunk (Ta)."""
    ensemble_decay: float = 0.0
    """Ensemble weights exp(-decay * k) for the prediction made k steps ago (0 = plain mean)."""
    obs_normalization: Literal["meanstd", "minmax"] = "meanstd"
    """How observations are normalised."""
    action_relative_to: list[int] = field(default_factory=list)
    """Empty: absolute actions. Else, for each action dim, the observation index it is relative
    to: chunks are learnt and predicted minus those features of the step they start at."""
    nonfinite_obs: Literal["raise", "hold"] = "raise"
    """What `select_action` does with a NaN/inf observation: raise, or act on that env's last
    finite observation (warning once)."""
    vision: VisionConfig = field(default_factory=VisionConfig)
    """Cameras the policy sees besides the state, and their encoder (vqbet.nn.vision); no cameras by
    default. With cameras, observations are {"state": (..., D), <camera>: (..., H, W, 3) uint8}."""

    def __post_init__(self) -> None:
        if isinstance(self.vision, dict):
            self.vision = config_from_dict(VisionConfig, self.vision, f"{type(self).__name__}.vision")
        check_literals(self)
        self.check_positive("obs_dim", "action_dim", "obs_window", "action_chunk")
        steps = self.execute_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= self.action_chunk:
            raise ValueError(
                f"{type(self).__name__}: execute_steps must be an integer in [0, action_chunk="
                f"{self.action_chunk}], got {self.execute_steps!r}"
            )
        if self.ensemble_decay < 0:
            raise ValueError(f"{type(self).__name__}: ensemble_decay must be >= 0, got {self.ensemble_decay}")
        self.action_relative_to = check_relative_to(
            self.action_relative_to, self.obs_dim, self.action_dim, type(self).__name__
        )

    def check_positive(self, *names: str) -> None:
        """Raise ValueError naming the first of `names` that is not an integer >= 1."""
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name} must be an integer >= 1, got {value!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> PolicyConfig:
        """Build from a dict, naming unknown keys instead of failing with a TypeError."""
        return config_from_dict(cls, data, source)


def masked_mean(error: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of error (N, Ta, X) over the steps where mask (N, Ta) is True. Divided by the full count,
    not the mask's: equal-sized DDP shards then average to exactly the single-process loss."""
    if mask is None:
        return error.mean()
    return (error * mask[..., None].to(error.dtype)).sum() / error.numel()


class Policy(ChunkActing, nn.Module):
    """Base of every policy family. `loss, metrics = policy(batch)` with batch {"obs": (B, To, D),
    "action": (B, To, Ta, A), optional "action_mask": (B, To, Ta), "goal": (B, G)}; acting:
    `reset()`, `select_action(obs (B, D)) -> (B, A)`; `predict_action_chunk(obs (B, T, D))`."""

    name: ClassVar[str] = ""
    """Registry key (set by @register_policy)."""
    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config)}")
        self.config = config
        self.obs_normalizer = Normalizer(config.obs_dim, mode=config.obs_normalization)
        self.image_encoders = ImageEncoders(config.vision) if config.vision.cameras else None
        self.obs_features = config.obs_dim + config.vision.feature_dim
        """Features per step the network sees: the state, then each camera's encoding."""
        vision = config.vision
        self.env_state_head: nn.Linear | None = None
        if vision.cameras and vision.env_state_weight > 0:
            self.env_state_head = nn.Linear(vision.feature_dim, vision.env_state_dim)
            self.env_state_normalizer = Normalizer(vision.env_state_dim)
        self.metadata: dict[str, Any] = {}
        """Free JSON metadata saved with the checkpoint (the pipeline records the task here)."""
        self.reset()

    @classmethod
    def build(cls, policy: dict[str, Any], tokenizer: dict[str, Any] | None = None) -> Policy:
        """A fresh, unfitted policy from plain dicts (what a hydra config holds): `policy` holds
        the config fields; `tokenizer` the tokenizer's, for families that learn one."""
        return cls(cls.config_class.from_dict(policy, f"policy config ({cls.name})"))

    @property
    def network(self) -> nn.Module:
        """The arithmetic-heavy module (transformer, MLP) that `torch.compile` acts on."""
        raise NotImplementedError

    # -- phase 1 ---------------------------------------------------------------------------
    def fit_statistics(
        self,
        windows: TrajectoryWindows,
        *,
        seed: int = 0,
        tokenizer_fit: Any = None,
        log_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Phase 1: fit what the policy learns before its own training (here the observation
        normaliser; families add tokenizers, bins, action normalisers). Returns a summary (for a
        learnt tokenizer: `history`, `reconstruction_loss`, `used_fraction/<layer>`)."""
        self.obs_normalizer.fit(torch.from_numpy(np.asarray(windows.data.obs[windows.steps()])))
        if self.env_state_head is not None:
            self.check_env_state(windows.data)
            env_state = np.asarray(windows.data.env_state[windows.steps()])
            self.env_state_normalizer.fit(torch.from_numpy(env_state))
        return {}

    def check_env_state(self, data: EpisodeData) -> None:
        """Raise ValueError if this policy learns to predict env_state (vision.env_state_weight > 0)
        and `data` holds none, or one of another size."""
        if self.env_state_head is None:
            return
        expected = self.config.vision.env_state_dim
        if data.env_state is None or data.env_state.shape[1] != expected:
            found = "none" if data.env_state is None else f"{data.env_state.shape[1]} values per step"
            raise ValueError(
                f"{data.source}: vision.env_state_weight > 0 needs the dataset's env_state "
                f"({expected} values per step), found {found}; collect the dataset again from "
                "the env with cameras (collection stores env_state), or set env_state_weight 0"
            )

    def chunks_in_frame(self, windows: TrajectoryWindows) -> Tensor:
        """(M, Ta, A) the action chunk at every step of `windows`, in the policy's action frame."""
        chunks, obs = windows.action_chunks(), windows.anchor_obs()  # obs: the state
        relative = to_relative(chunks, obs, self.config.action_relative_to)
        return torch.from_numpy(np.ascontiguousarray(relative, dtype=np.float32))

    def freeze_statistics(self) -> None:
        """End of phase 1: what `fit_statistics` learnt stops changing (phase 2 calls this)."""

    # -- observations ----------------------------------------------------------------------
    def observe(self, obs: Observation) -> Tensor:
        """Raw observations (B, T, D), or {"state": (B, T, D), <camera>: (B, T, H, W, 3) uint8}
        -> what the network sees (B, T, obs_features): the normalised state, then each camera's
        features (random crops in training mode, centre crops in eval mode)."""
        x = self.obs_normalizer.normalize(state_of(obs))
        if self.image_encoders is None:
            return x
        return torch.cat([x, self.image_encoders(obs).to(x.dtype)], dim=-1)

    def with_env_state_loss(
        self, loss: Tensor, observed: Tensor, batch: dict[str, Any], metrics: dict[str, float]
    ) -> Tensor:
        """`loss` plus vision.env_state_weight x the MSE of the env-state head on the camera
        features of `observed` (B, T, obs_features, from `observe`) against batch["env_state"]
        (B, T, S) normalised; `loss` itself without that head. Records it in `metrics`."""
        if self.env_state_head is None:
            return loss
        if "env_state" not in batch:
            raise ValueError(
                "this policy learns to predict env_state from its cameras (vision.env_state_weight "
                "> 0): the batch needs 'env_state' (B, T, S), which windows of a dataset holding "
                "env_state carry"
            )
        target = self.env_state_normalizer.normalize(batch["env_state"])
        predicted = self.env_state_head(observed[..., self.config.obs_dim :])
        env_state_loss = F.mse_loss(predicted.float(), target)
        loss = loss + self.config.vision.env_state_weight * env_state_loss
        metrics.update(loss=loss.item(), env_state_loss=env_state_loss.item())
        return loss

    def input_spec(self) -> InputSpec:
        """What this policy takes (the shared input check's spec)."""
        return InputSpec.of(self.config)

    # -- training --------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def check_batch(self, batch: dict[str, Any]) -> tuple[Observation, Tensor]:
        """(obs (B, T, D) or a dict with cameras, action (B, T, Ta, A)) of a training batch, or a
        ValueError naming what is wrong."""
        if "obs" not in batch or "action" not in batch:
            raise ValueError(f"a batch needs 'obs' and 'action', got keys {sorted(batch)}")
        c = self.config
        device = next(self.parameters()).device
        checked, _ = check_inputs(batch["obs"], self.input_spec(), "forward", steps=True, device=device)
        obs: Observation = checked if len(checked) > 1 else checked["state"]
        action = batch["action"]
        b, t = checked["state"].shape[:2]
        if not isinstance(action, Tensor) or tuple(action.shape) != (b, t, c.action_chunk, c.action_dim):
            raise ValueError(
                f"forward: action must have shape (B, T, {c.action_chunk}, {c.action_dim}) matching obs "
                f"{(b, t)}, got {tuple(getattr(action, 'shape', ()))}"
            )
        check_finite(action, "action", "forward")
        return obs, action

    # -- acting ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict_action_chunk(self, obs_window: Any, goal: Tensor | np.ndarray | None = None) -> Tensor:
        """obs_window (B, T <= To, D) raw, or {"state": (B, T, D), <camera>: (B, T, H, W, 3)
        uint8} -> action chunk (B, Ta, A) raw (absolute), for the last step. Numpy or torch input,
        on any device."""
        device = next(self.parameters()).device
        checked, goal = check_inputs(
            obs_window, self.input_spec(), "predict_action_chunk", steps=True, goal=goal, device=device
        )
        obs: Observation = checked if len(checked) > 1 else checked["state"]
        return self._predict_chunk(obs, goal)

    def _predict_chunk(self, obs: Observation, goal: Tensor | None) -> Tensor:
        """obs (B, T, D) float tensor (or a dict with cameras) on the policy's device -> (B, Ta, A)
        raw. A family whose predictions can fail to decode sets `invalid_rows` (B,) bool for the
        acting layer's fallback (vqbet.policies.acting) and counts them in `decode_stats`."""
        raise NotImplementedError

    invalid_rows: Tensor | None = None
    """Rows of the last `_predict_chunk` that did not decode (None: all did)."""

    def decode_stats(self) -> dict[str, float]:
        """Counts of predicted token sequences and of those that did not decode (families that
        decode tokens one at a time); empty for the rest."""
        return {}

    def reset_decode_stats(self) -> None:
        """Start `decode_stats` counting afresh (evaluation does, before its episodes)."""

    def count_fallback(self, rows: int) -> None:
        """The acting layer replaced `rows` chunks that did not decode (see `decode_stats`)."""

    # -- persistence -----------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        """What config.json holds: family, config, metadata (+ a family's extra entries)."""
        return {
            "model_type": MODEL_TYPE,
            "format_version": FORMAT_VERSION,
            "family": self.name,
            "policy": dataclasses.asdict(self.config),
            "metadata": self.metadata,
        }

    def extra_files(self) -> dict[str, dict[str, Any]]:
        """JSON files saved beside the weights (file name -> content): a tokenizer's vocabulary
        that is not a tensor (FAST's BPE); none by default."""
        return {}

    def load_extra(self, path: str | os.PathLike) -> None:
        """Read what `extra_files` wrote, from checkpoint folder `path` (after the weights)."""

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Folder with config.json and model.safetensors (all weights, tokenizer and normalisers
        included; `extra_files` beside them), written atomically."""
        return write_folder(
            path,
            json_files={CONFIG_FILE: self.meta(), **self.extra_files()},
            tensor_files={WEIGHTS_FILE: self.state_dict()},
        )

    def export(
        self,
        path: str | os.PathLike,
        *,
        max_batch: int = 4096,
        compiled: bool = False,
        overwrite: bool = False,
    ) -> Path:
        """A `torch.export` program of acting (obs window -> chunk) in folder `path`, which
        `vqbet.policies.export.ExportedPolicy.load` (or any `torch.export.load`) runs without this code;
        `compiled`: an AOTInductor package of native code instead (faster; this torch and CPU).
        An existing folder is replaced (atomically) only with `overwrite`."""
        from vqbet.policies.export import export_policy

        return export_policy(self, path, max_batch=max_batch, compiled=compiled, overwrite=overwrite)

    def before_export(self) -> None:
        """Called on the copy that `export` traces, before tracing: a family that keeps state
        for acting (the token policy's decoding weights) fixes it here. Nothing by default."""

    @classmethod
    def _from_meta(cls, config: PolicyConfig, meta: dict[str, Any], source: str) -> Policy:
        """An unfitted policy of this family shaped like the checkpoint `meta` describes."""
        return cls(config)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu", **expect: Any
    ) -> Policy:
        """Load a checkpoint folder (JSON + safetensors only: nothing in it is executed). Called on
        `Policy` it loads any family; on a family, only that family. `expect` (e.g. obs_dim=6)
        turns a config mismatch into a clear error."""
        meta_file = FOREIGN_META_FILE if (Path(path) / FOREIGN_META_FILE).is_file() else CONFIG_FILE
        meta = read_json(path, meta_file)
        source = str(Path(path) / meta_file)
        family = _family(meta, source)
        fields = dict(meta["policy"])
        if family in RENAMED_FAMILIES:
            family, moved = RENAMED_FAMILIES[family]
            fields = {k: v for k, v in fields.items() if k not in moved}
        klass = policy_class(family)
        if not issubclass(klass, cls):
            raise ValueError(f"{source}: a {family!r} checkpoint, not a {cls.__name__}")
        config = klass.config_class.from_dict(fields, source)
        for name, want in expect.items():
            if want is not None and getattr(config, name) != want:
                raise ValueError(
                    f"{source}: checkpoint has {name}={getattr(config, name)}, but {name}={want} is expected"
                )
        policy = klass._from_meta(config, meta, source)
        weights = str(Path(path) / WEIGHTS_FILE)
        load_state_strict(policy, read_tensors(path), weights)
        policy.load_extra(path)
        policy.metadata = dict(meta.get("metadata") or {})
        return policy.to(map_location).eval()


RENAMED_FAMILIES = {"bet": ("vqbet", ("num_bins", "kmeans_iters"))}
"""Families that became named configurations of another: their checkpoints load as that family,
without their config keys that moved to the tokenizer (which the checkpoint also records)."""


def _family(meta: dict[str, Any], source: str) -> str:
    """The family a checkpoint's config.json names."""
    model_type, version = meta.get("model_type"), meta.get("format_version")
    if model_type != MODEL_TYPE or version != FORMAT_VERSION:
        raise ValueError(
            f"{source}: not a vqbet policy checkpoint of format {FORMAT_VERSION} "
            f"(model_type={model_type!r}, format_version={version!r})"
        )
    if not isinstance(meta.get("policy"), dict):
        raise ValueError(f"{source}: key 'policy' is missing or not an object")
    return str(meta.get("family"))


def load_policy(path: str | os.PathLike, map_location: str | torch.device = "cpu", **expect: Any) -> Policy:
    """Load any policy checkpoint folder (VQ-BeT, BeT, MLP or a registered family) by its
    config.json's family. `expect` (obs_dim=..., action_dim=...) turns a mismatch into a clear
    error."""
    return Policy.from_pretrained(path, map_location, **expect)
