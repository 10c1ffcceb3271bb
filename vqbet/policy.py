"""VQBeTPolicy: a causal transformer over observations that predicts, for every step of its window,
the RVQ code of each layer (classification) and an offset that corrects the decoded action chunk.

The tokenizer, the observation normaliser and the config live in the policy's state: one
checkpoint folder holds everything needed to act.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqbet.acting import ChunkActing, check_relative_to, to_absolute, to_relative
from vqbet.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    config_from_dict,
    load_state_strict,
    read_json,
    read_tensors,
    write_folder,
)
from vqbet.gpt import GPT
from vqbet.kmeans_tokenizer import KMeansTokenizer, KMeansTokenizerConfig
from vqbet.normalize import Normalizer
from vqbet.tokenizer import ActionTokenizer, ChunkTokenizer, TokenizerConfig, mlp

MODEL_TYPE = "vqbet.VQBeTPolicy"
FORMAT_VERSION = 1


@dataclass
class VQBeTConfig:
    """Everything that defines a VQBeTPolicy (besides its tokenizer); saved in config.json."""

    obs_dim: int = 2
    """D: size of one observation."""
    action_dim: int = 2
    """A: size of one action (must equal the tokenizer's)."""
    obs_window: int = 5
    """To: observations the transformer sees (the current one and To-1 before it)."""
    action_chunk: int = 5
    """Ta: actions predicted per step (must equal the tokenizer's chunk_size)."""
    n_layer: int = 4
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads per block."""
    n_embd: int = 128
    """Transformer width."""
    dropout: float = 0.1
    """Dropout in the transformer (active in training mode only)."""
    head_hidden: int = 256
    """Width of the code and offset head MLPs."""
    code_embd: int = 32
    """Size of the code embeddings that condition the offset head (and later code layers)."""
    code_loss_weights: list[float] = field(default_factory=list)
    """Weight of each RVQ layer's code loss; empty means 1.0 for every layer."""
    offset_loss_weight: float = 10.0
    """Weight of the L1 offset loss (in the tokenizer's normalised action units)."""
    focal_gamma: float = 2.0
    """Focal-loss gamma of the code classification (0 = cross-entropy)."""
    temperature: float = 1.0
    """Sampling temperature of codes at acting time; 0 takes the most likely code."""
    sequential_codes: bool = True
    """Predict layer l's code conditioned on the codes chosen for layers < l (else jointly)."""
    goal_conditioning: str = "none"
    """"none", "prepend" (a goal token before the observations) or "concat" (goal features
    concatenated to every observation)."""
    goal_dim: int = 0
    """Size of the goal vector (with goal conditioning)."""
    execution: str = "queue"
    """"queue": predict a chunk and play it out open loop; "ensemble": predict every step and average
    the overlapping chunk predictions."""
    ensemble_decay: float = 0.0
    """Ensemble weights exp(-decay * k) for the prediction made k steps ago (0 = plain mean)."""
    obs_normalization: str = "meanstd"
    """How observations are normalised: "meanstd" or "minmax"."""
    action_relative_to: list[int] = field(default_factory=list)
    """Empty: absolute actions. Else, for each action dim, the observation index it is relative
    to: chunks are learnt and predicted minus those features of the step they start at."""

    def __post_init__(self) -> None:
        for name in ("obs_dim", "action_dim", "obs_window", "action_chunk", "n_layer", "n_head", "n_embd"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"VQBeTConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"VQBeTConfig: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        if self.temperature < 0:
            raise ValueError(f"VQBeTConfig: temperature must be >= 0, got {self.temperature}")
        if self.goal_conditioning not in ("none", "prepend", "concat"):
            raise ValueError(
                f"VQBeTConfig: goal_conditioning must be none|prepend|concat, got {self.goal_conditioning!r}"
            )
        if self.goal_conditioning != "none" and self.goal_dim < 1:
            raise ValueError("VQBeTConfig: goal conditioning needs goal_dim >= 1")
        if self.execution not in ("queue", "ensemble"):
            raise ValueError(f"VQBeTConfig: execution must be queue|ensemble, got {self.execution!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"VQBeTConfig: dropout must be in [0, 1), got {self.dropout}")
        self.code_loss_weights = [float(w) for w in self.code_loss_weights]
        self.action_relative_to = check_relative_to(
            self.action_relative_to, self.obs_dim, self.action_dim, "VQBeTConfig"
        )

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> VQBeTConfig:
        """Build from a dict, naming unknown keys instead of failing with a TypeError."""
        return config_from_dict(cls, data, source)


def focal_loss(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    """Mean focal loss -(1 - p_t)^gamma log p_t; logits (N, K), target (N,)."""
    log_p = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
    if gamma == 0:
        return -log_p.mean()
    return -((1 - log_p.exp()) ** gamma * log_p).mean()


def sample_codes(logits: Tensor, temperature: float) -> Tensor:
    """logits (N, K) -> codes (N,); temperature 0 is argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    # Inverse-CDF sampling: same distribution as torch.multinomial at a fraction of its overhead
    # for the small batches of acting (it was ~10% of a batch-1 action).
    cdf = F.softmax(logits / temperature, dim=-1).cumsum(dim=-1)
    u = torch.rand(logits.shape[0], 1, device=logits.device, dtype=cdf.dtype) * cdf[:, -1:]
    return (cdf <= u).sum(dim=-1).clamp_max(logits.shape[-1] - 1)


class VQBeTPolicy(ChunkActing, nn.Module):
    """VQ-BeT. `loss, metrics = policy(batch)` with batch {"obs": (B, To, D), "action": (B, To, Ta, A),
    optional "action_mask": (B, To, Ta), "goal": (B, G)}; acting: `reset()`, `select_action(obs)`."""

    def __init__(self, config: VQBeTConfig, tokenizer: ChunkTokenizer) -> None:
        super().__init__()
        tc = tokenizer.config
        if (tc.action_dim, tc.chunk_size) != (config.action_dim, config.action_chunk):
            raise ValueError(
                f"tokenizer encodes chunks of {tc.chunk_size} x {tc.action_dim} actions, but the policy "
                f"predicts {config.action_chunk} x {config.action_dim} (action_chunk x action_dim)"
            )
        self.config = c = config
        self.tokenizer = tokenizer
        self.num_layers, self.codebook_size = tokenizer.num_layers, tokenizer.codebook_size
        if c.code_loss_weights and len(c.code_loss_weights) != self.num_layers:
            raise ValueError(
                f"code_loss_weights has {len(c.code_loss_weights)} entries for {self.num_layers} RVQ layers"
            )
        self.obs_normalizer = Normalizer(c.obs_dim, mode=c.obs_normalization)
        self.register_buffer("tokenizer_frozen", torch.tensor(False))
        token_in = c.obs_dim + (c.goal_dim if c.goal_conditioning == "concat" else 0)
        self.obs_embed = nn.Linear(token_in, c.n_embd)
        self.goal_embed = nn.Linear(c.goal_dim, c.n_embd) if c.goal_conditioning == "prepend" else None
        extra = 1 if c.goal_conditioning == "prepend" else 0
        self.gpt = GPT(
            block_size=c.obs_window + extra,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_embd=c.n_embd,
            dropout=c.dropout,
        )
        layers, k = self.num_layers, self.codebook_size
        self.code_embed = nn.ModuleList([nn.Embedding(k, c.code_embd) for _ in range(layers)])
        if c.sequential_codes:
            self.code_heads = nn.ModuleList(
                [mlp(c.n_embd + i * c.code_embd, c.head_hidden, k, 2) for i in range(layers)]
            )
        else:
            self.code_heads = nn.ModuleList([mlp(c.n_embd, c.head_hidden, layers * k, 2)])
        self.offset_head = mlp(
            c.n_embd + layers * c.code_embd, c.head_hidden, c.action_chunk * c.action_dim, 2
        )
        self.reset()

    def freeze_tokenizer(self) -> None:
        """End of phase 1: the tokenizer stops learning and stays in eval mode from now on."""
        self.tokenizer.requires_grad_(False)
        self.tokenizer.zero_grad(set_to_none=True)  # stale phase-1 gradients must not reach clipping
        self.tokenizer.eval()
        self.tokenizer_frozen.fill_(True)

    def train(self, mode: bool = True) -> VQBeTPolicy:
        super().train(mode)
        if bool(self.tokenizer_frozen):
            self.tokenizer.eval()
        return self

    # -- model -----------------------------------------------------------------------------
    def features(self, obs: Tensor, goal: Tensor | None = None, last_only: bool = False) -> Tensor:
        """obs (B, T, D) raw -> transformer features (B, T, n_embd), or (B, 1, n_embd) for the last
        step only when `last_only`."""
        c = self.config
        if obs.ndim != 3 or obs.shape[-1] != c.obs_dim or obs.shape[1] > c.obs_window:
            raise ValueError(
                f"obs must have shape (B, T <= {c.obs_window}, {c.obs_dim}), got {tuple(obs.shape)}"
            )
        x = self.obs_normalizer.normalize(obs)
        if c.goal_conditioning != "none":
            if goal is None or goal.shape[-1] != c.goal_dim:
                raise ValueError(f"this policy is goal-conditioned: pass goal (B, {c.goal_dim})")
            goal = goal.to(x)
        if c.goal_conditioning == "concat":
            x = torch.cat([x, goal[:, None].expand(-1, x.shape[1], -1)], dim=-1)
        tokens = self.obs_embed(x)
        if self.goal_embed is not None:
            tokens = torch.cat([self.goal_embed(goal)[:, None], tokens], dim=1)
        feats = self.gpt(tokens, last_only)
        return feats[:, 1:] if self.goal_embed is not None and not last_only else feats

    def _embedded(self, codes: Tensor, upto: int) -> list[Tensor]:
        return [self.code_embed[i](codes[:, i]) for i in range(upto)]

    def code_logits(self, h: Tensor, codes: Tensor) -> list[Tensor]:
        """Per-layer logits (N, K) from features h (N, C), teacher-forced on codes (N, L)."""
        if not self.config.sequential_codes:
            return list(self.code_heads[0](h).view(h.shape[0], self.num_layers, -1).unbind(1))
        return [
            head(torch.cat([h, *self._embedded(codes, i)], dim=-1)) for i, head in enumerate(self.code_heads)
        ]

    def offsets(self, h: Tensor, codes: Tensor) -> Tensor:
        """Offset (N, Ta, A) in normalised action units, for features h (N, C) and codes (N, L)."""
        c = self.config
        out = self.offset_head(torch.cat([h, *self._embedded(codes, self.num_layers)], dim=-1))
        return out.view(-1, c.action_chunk, c.action_dim)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Training loss and metrics (per-layer code accuracy, offset error) on a batch of windows."""
        c = self.config
        obs, action = batch["obs"], batch["action"]
        b, t = obs.shape[:2]
        if action.shape != (b, t, c.action_chunk, c.action_dim):
            raise ValueError(
                f"action must have shape (B, To, {c.action_chunk}, {c.action_dim}) matching obs "
                f"{tuple(obs.shape)}, got {tuple(action.shape)}"
            )
        h = self.features(obs, batch.get("goal")).reshape(b * t, -1)
        action = to_relative(action, obs, c.action_relative_to)
        chunks = action.reshape(b * t, c.action_chunk, c.action_dim)
        with torch.no_grad():
            codes = self.tokenizer.encode(chunks)  # (N, L) targets from the frozen tokenizer
            decoded = self.tokenizer.normalizer.normalize(self.tokenizer.decode(codes))
        logits = self.code_logits(h, codes)
        weights = c.code_loss_weights or [1.0] * self.num_layers
        code_loss = sum(
            w * focal_loss(lg, codes[:, i], c.focal_gamma)
            for i, (w, lg) in enumerate(zip(weights, logits, strict=True))
        )
        error = (decoded + self.offsets(h, codes) - self.tokenizer.normalizer.normalize(chunks)).abs()
        mask = batch.get("action_mask")
        if mask is not None:
            mask = mask.reshape(b * t, c.action_chunk, 1).to(error.dtype)
            # Normalised by the full count, not the mask's: equal-sized DDP shards then average
            # to exactly the single-process loss.
            offset_loss = (error * mask).sum() / error.numel()
        else:
            offset_loss = error.mean()
        loss = code_loss + c.offset_loss_weight * offset_loss
        metrics = {"loss": loss.item(), "code_loss": code_loss.item(), "offset_loss": offset_loss.item()}
        for i, lg in enumerate(logits):
            metrics[f"code_accuracy/{i}"] = (lg.argmax(-1) == codes[:, i]).float().mean().item()
        return loss, metrics

    # -- acting ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict_action_chunk(self, obs_window: Tensor, goal: Tensor | None = None) -> Tensor:
        """obs_window (B, T <= To, D) raw -> action chunk (B, Ta, A) raw (absolute), for the last
        step. Codes are sampled at `config.temperature` (0 = argmax)."""
        h = self.features(obs_window, goal, last_only=True)[:, -1]
        codes = torch.empty(h.shape[0], self.num_layers, dtype=torch.long, device=h.device)
        temperature = self.config.temperature
        if self.config.sequential_codes:
            for i, head in enumerate(self.code_heads):
                codes[:, i] = sample_codes(head(torch.cat([h, *self._embedded(codes, i)], -1)), temperature)
        else:
            for i, lg in enumerate(self.code_logits(h, codes)):
                codes[:, i] = sample_codes(lg, temperature)
        norm = self.tokenizer.normalizer
        decoded = norm.normalize(self.tokenizer.decode(codes))
        chunk = norm.unnormalize(decoded + self.offsets(h, codes))
        return to_absolute(chunk, obs_window[:, -1], self.config.action_relative_to)

    # -- persistence -----------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Folder with config.json (policy + tokenizer configs) and model.safetensors (all weights,
        tokenizer and normalisers included), written atomically."""
        return write_folder(
            path, json_files={CONFIG_FILE: self.meta()}, tensor_files={WEIGHTS_FILE: self.state_dict()}
        )

    def meta(self) -> dict:
        return {
            "model_type": MODEL_TYPE,
            "format_version": FORMAT_VERSION,
            "policy": dataclasses.asdict(self.config),
            "tokenizer": dataclasses.asdict(self.tokenizer.config),
            "tokenizer_type": "kmeans" if isinstance(self.tokenizer, KMeansTokenizer) else "rvq",
        }

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        map_location: str | torch.device = "cpu",
        *,
        obs_dim: int | None = None,
        action_dim: int | None = None,
    ) -> VQBeTPolicy:
        """Load a saved policy (JSON + safetensors only; nothing in it is executed). With obs_dim /
        action_dim, a checkpoint made for other dimensions is a clear error."""
        meta = read_json(path)
        source = str(Path(path) / CONFIG_FILE)
        if meta.get("model_type") != MODEL_TYPE or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source}: not a vqbet policy checkpoint of format {FORMAT_VERSION} "
                f"(model_type={meta.get('model_type')!r}, format_version={meta.get('format_version')!r})"
            )
        for key in ("policy", "tokenizer"):
            if not isinstance(meta.get(key), dict):
                raise ValueError(f"{source}: key {key!r} is missing or not an object")
        config = VQBeTConfig.from_dict(meta["policy"], source)
        for name, want in (("obs_dim", obs_dim), ("action_dim", action_dim)):
            if want is not None and getattr(config, name) != want:
                raise ValueError(
                    f"{source}: checkpoint has {name}={getattr(config, name)}, but the task has {name}={want}"
                )
        if meta.get("tokenizer_type", "rvq") == "kmeans":
            tokenizer: ChunkTokenizer = KMeansTokenizer(KMeansTokenizerConfig(**meta["tokenizer"]))
        else:
            tokenizer = ActionTokenizer(TokenizerConfig.from_dict(meta["tokenizer"], source))
        policy = cls(config, tokenizer)
        load_state_strict(policy, read_tensors(path), str(Path(path) / WEIGHTS_FILE))
        return policy.to(map_location).eval()
