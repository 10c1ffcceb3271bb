"""VQ-BeT (Lee et al. 2024): a causal transformer over observations that predicts, for every step of
its window, the code of each RVQ layer (classification) and an offset that corrects the decoded
action chunk (regression).

Action chunks are normalised once (by the tokenizer's normaliser) and stay normalised through
encode, decode and the offset until `_predict_chunk` returns raw actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqbet.nn.gpt import GPT
from vqbet.nn.heads import PredictionHeads
from vqbet.policies.acting import Observation, state_of, to_absolute, to_relative
from vqbet.policies.base import masked_mean
from vqbet.policies.registry import register_policy
from vqbet.policies.tokenized import TokenizedPolicy, TransformerConfig
from vqbet.tokenizers import ChunkTokenizer


@dataclass
class VQBeTConfig(TransformerConfig):
    """Everything that defines a VQBeTPolicy (besides its tokenizer); saved in config.json."""

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
    temperature: float | list[float] = 1.0
    """Sampling temperature of codes at acting time; 0 takes the most likely code. A list gives one
    per RVQ layer (e.g. the coarse first layer, which picks the mode, hotter than the residual)."""
    min_p: float = 0.0
    """Acting: codes less likely than `min_p` times the most likely code are never sampled (0: off;
    after the temperature). Unlike a low temperature it keeps the odds between the codes it leaves:
    where several codes are about as likely (a choice between modes) it samples them as learnt,
    where one dominates (executing a mode) it drops the unlikely rest."""
    sequential_codes: bool = True
    """Predict layer l's code conditioned on the codes chosen for layers < l (else jointly)."""
    goal_conditioning: Literal["none", "prepend", "concat"] = "none"
    """"none", "prepend" (a goal token before the observations) or "concat" (goal features
    concatenated to every observation)."""
    goal_dim: int = 0
    """Size of the goal vector (with goal conditioning)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        self.check_positive("head_hidden", "code_embd")
        temperatures = self.temperature if isinstance(self.temperature, list) else [self.temperature]
        if not temperatures or any(
            isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0 for t in temperatures
        ):
            raise ValueError(
                f"{name}: temperature must be a number >= 0 or a non-empty list of them (one per RVQ "
                f"layer), got {self.temperature!r}"
            )
        if isinstance(self.temperature, list):
            self.temperature = [float(t) for t in self.temperature]
        min_p = self.min_p
        if isinstance(min_p, bool) or not isinstance(min_p, (int, float)) or not 0 <= min_p < 1:
            raise ValueError(f"{name}: min_p must be a number in [0, 1), got {min_p!r}")
        self.min_p = float(min_p)
        if self.goal_conditioning != "none" and self.goal_dim < 1:
            raise ValueError(f"{name}: goal conditioning needs goal_dim >= 1")
        self.code_loss_weights = [float(w) for w in self.code_loss_weights]


def focal_loss(logits: Tensor, target: Tensor, gamma: float, ignore_index: int | None = None) -> Tensor:
    """Focal loss -(1 - p_t)^gamma log p_t, averaged over N: logits (..., N, K), target (..., N)
    -> (...) (one loss per RVQ layer for logits (L, N, K)); gamma 0 is cross-entropy. Targets equal
    to `ignore_index` count for nothing, the mean is over the others."""
    kept = None if ignore_index is None else target != ignore_index
    if kept is not None:
        target = target.masked_fill(~kept, 0)
    log_p = F.log_softmax(logits.float(), dim=-1).gather(-1, target[..., None]).squeeze(-1)
    loss = -log_p if gamma == 0 else -((1 - log_p.exp()) ** gamma * log_p)
    if kept is None:
        return loss.mean(-1)
    return (loss * kept).sum(-1) / kept.sum(-1)


def sample_codes(logits: Tensor, temperature: float, min_p: float = 0.0, top_p: float = 1.0) -> Tensor:
    """logits (N, K) -> codes (N,); temperature 0 is argmax. `min_p` > 0: codes whose probability
    (at `temperature`) is below min_p x the row's largest are left out; `top_p` < 1: only the
    smallest set of likeliest codes whose probability reaches top_p (the nucleus) is kept. The
    codes kept keep their odds."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = F.softmax(logits / temperature, dim=-1)
    if min_p > 0:
        probs = probs * (probs >= min_p * probs.amax(dim=-1, keepdim=True))
    if top_p < 1:
        ranked, order = probs.sort(dim=-1, descending=True)
        before = ranked.cumsum(dim=-1) - ranked  # probability of the likelier codes
        probs = probs * torch.zeros_like(probs).scatter(-1, order, (before < top_p).to(probs.dtype))
    # Inverse-CDF sampling: same distribution as torch.multinomial at a fraction of its overhead
    # for the small batches of acting; scaling u by the total
    # renormalises what min_p and top_p left.
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(logits.shape[0], 1, device=logits.device, dtype=cdf.dtype) * cdf[:, -1:]
    return (cdf <= u).sum(dim=-1).clamp_max(logits.shape[-1] - 1)


@register_policy("vqbet")
class VQBeTPolicy(TokenizedPolicy):
    """VQ-BeT's code heads over any fixed-length `ChunkTokenizer`: one categorical per token
    position (residual VQ layers by default; BeT's k-means bins, FSQ, per-dimension bins) and the
    offset."""

    config_class = VQBeTConfig
    config: VQBeTConfig

    def __init__(self, config: VQBeTConfig, tokenizer: ChunkTokenizer) -> None:
        super().__init__(config, tokenizer)
        c = config
        self.num_layers, self.codebook_size = tokenizer.num_layers, tokenizer.codebook_size
        if c.code_loss_weights and len(c.code_loss_weights) != self.num_layers:
            raise ValueError(
                f"code_loss_weights has {len(c.code_loss_weights)} entries for {self.num_layers} RVQ layers"
            )
        self.layer_temperatures()  # a per-layer list of the wrong length fails here, not at acting
        token_in = self.obs_features + (c.goal_dim if c.goal_conditioning == "concat" else 0)
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
        self.heads = PredictionHeads(
            c.n_embd,
            c.code_embd,
            c.head_hidden,
            self.num_layers,
            self.codebook_size,
            c.action_chunk * c.action_dim,
            sequential=c.sequential_codes,
        )

    @property
    def network(self) -> nn.Module:
        return self.gpt

    # -- model -----------------------------------------------------------------------------
    def features(self, obs: Observation, goal: Tensor | None = None, last_only: bool = False) -> Tensor:
        """obs (B, T, D) raw (or a dict with cameras) -> transformer features (B, T, n_embd), or
        (B, 1, n_embd) for the last step only when `last_only`."""
        return self._features_of(self.observe(obs), goal, last_only)

    def _features_of(self, x: Tensor, goal: Tensor | None = None, last_only: bool = False) -> Tensor:
        """`features` from observed steps x (B, T, obs_features) (`observe`'s output)."""
        c = self.config
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

    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Training loss and metrics (per-layer code accuracy, offset error) on a batch of windows."""
        c = self.config
        obs, action = self.check_batch(batch)
        state = state_of(obs)
        b, t = state.shape[:2]
        observed = self.observe(obs)
        h = self._features_of(observed, batch.get("goal")).reshape(b * t, -1)
        chunks = to_relative(action, state, c.action_relative_to).reshape(b * t, c.action_chunk, c.action_dim)
        target = self.tokenizer.normalizer.normalize(chunks)  # the one normalisation of the chunk
        with torch.no_grad():
            codes = self.tokenizer.encode_normalized(target)  # (N, L) targets from the frozen tokenizer
            decoded = self.tokenizer.decode_normalized(codes)
        logits, offsets = self.heads(h, codes)
        per_layer = focal_loss(logits, codes.T, c.focal_gamma)  # (L,)
        code_loss = (
            per_layer.sum()
            if not c.code_loss_weights
            else per_layer @ per_layer.new_tensor(c.code_loss_weights)
        )
        mask = batch.get("action_mask")
        error = (decoded + offsets.view_as(target) - target).abs()
        offset_loss = masked_mean(error, None if mask is None else mask.reshape(b * t, c.action_chunk))
        loss = code_loss + c.offset_loss_weight * offset_loss
        metrics = {"loss": loss.item(), "code_loss": code_loss.item(), "offset_loss": offset_loss.item()}
        accuracy = (logits.argmax(-1) == codes.T).float().mean(-1).tolist()
        metrics.update({f"code_accuracy/{i}": a for i, a in enumerate(accuracy)})
        return self.with_env_state_loss(loss, observed, batch, metrics), metrics

    # -- acting ----------------------------------------------------------------------------
    def layer_temperatures(self) -> list[float]:
        """The acting temperature of each RVQ layer (`config.temperature`, per layer if a list)."""
        t = self.config.temperature
        if not isinstance(t, list):
            return [float(t)] * self.num_layers
        if len(t) != self.num_layers:
            raise ValueError(f"temperature has {len(t)} entries for {self.num_layers} RVQ layers: {t}")
        return t

    def _predict_chunk(self, obs: Observation, goal: Tensor | None) -> Tensor:
        """Codes sampled at `config.temperature` (0 = argmax), decoded, offset, made raw once."""
        h = self.features(obs, goal, last_only=True)[:, -1]
        temperatures, min_p = self.layer_temperatures(), self.config.min_p
        codes, offsets = self.heads.sample(
            h, lambda logits, layer: sample_codes(logits, temperatures[layer], min_p)
        )
        normalised = self.tokenizer.decode_normalized(codes) + offsets.view(
            -1, self.config.action_chunk, self.config.action_dim
        )
        chunk = self.tokenizer.normalizer.unnormalize(normalised)
        return to_absolute(chunk, state_of(obs)[:, -1], self.config.action_relative_to)
