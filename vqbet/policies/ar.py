"""An autoregressive token policy: VQ-BeT's causal transformer over the observation window, then
the action chunk's tokens decoded one at a time, as vision-language-action models and other
token policies decode theirs. Over any tokenizer: fixed-length families (`rvq`, `fsq`, `kmeans`,
`bins`) give exactly their L tokens; variable-length ones (`fast`) end with an end token.

Sequence: [o_1 .. o_To, BOS, y_1 .. y_n] through one causal transformer; the output at BOS
predicts y_1, at y_i predicts y_{i+1} (teacher forcing in training: one pass, cross-entropy on
every position; for FAST the end token is a target too and positions after it are ignored).
With `target_steps` K > 1, training also learns the chunks of the window's K - 1 steps before the
last (as VQ-BeT's heads learn at every step): the sequence is [o_1 .. o_To, then K blocks of BOS,
y_1 .. y_{n-1}], each block attending to the observations up to its step and to itself, at the
positions acting gives the tokens after the whole window.
Acting prefills the observations and BOS, then runs each new token alone against the key/value
cache (`vqbet.nn.decoding.Decoder`), sampling at `temperature` (0: greedy) within the
`top_p` nucleus.

Offset (`offset`, on by default). Tokens alone act on the chunk their decode gives, which is only as
fine as the tokenizer (a code's centre, a bin, FAST's rounded coefficients). As VQ-BeT corrects its
decoded chunk, an MLP predicts a normalised offset added to it, from the transformer's output at
the position that predicts the sequence's last token (it has read every token before it) and that
last token's embedding (FAST: the end token, after every content token). So the offset costs no
decoding step: as VQ-BeT's offset head sees the features and the codes' embeddings. Training adds
its weighted L1 error against the true chunk to the token loss.

Invalid sequences. A fixed-length family decodes any code sequence. A FAST sequence that does not
spell exactly T x A coefficients is invalid: its rows are drawn again, up to `resample` times
(when sampling); a row still invalid acts on the previous chunk's unplayed remainder (its last
action held) where there is one, else on the chunk FAST's decode rule gives (missing high
frequencies zero, extra ones dropped). `decode_stats()` counts chunks, invalid draws, resamples and
fallbacks; evaluation reports them (`results.json` "decoding").

Export: the loop over a fixed-length family unrolls into the exported program. FAST's tokens
decode through its BPE vocabulary in Python, so a policy over FAST does not export (a clear error).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqbet.nn.gpt import GPT
from vqbet.policies.acting import Observation, state_of, to_absolute, to_relative
from vqbet.policies.base import masked_mean
from vqbet.policies.registry import register_policy
from vqbet.policies.tokenized import TokenizedPolicy, TransformerConfig
from vqbet.policies.vqbet import focal_loss, sample_codes
from vqbet.tokenizers import ChunkTokenizer

IGNORE = -100
"""Target of the positions after a FAST sequence's end token (no loss)."""


@dataclass
class ARConfig(TransformerConfig):
    """Everything that defines an ARPolicy (besides its tokenizer); saved in config.json."""

    temperature: float = 1.0
    """Acting: sampling temperature of each token; 0 takes the most likely token."""
    top_p: float = 1.0
    """Acting: sample within the smallest set of tokens whose probability reaches top_p (1: all)."""
    resample: int = 3
    """Acting: an invalid sequence (FAST) is drawn again up to this many times (when sampling)."""
    offset: bool = True
    """Predict a continuous offset that corrects the decoded chunk (as VQ-BeT's offset head) from
    the transformer's output before the last token and that token; False: tokens alone."""
    offset_hidden: int = 256
    """Width of the offset head's two hidden layers."""
    offset_loss_weight: float = 10.0
    """Weight of the L1 offset loss (in the tokenizer's normalised action units)."""
    focal_gamma: float = 0.0
    """Focal-loss gamma of the token classification (0: cross-entropy; VQ-BeT's code heads use 2)."""
    target_steps: int = 1
    """Training: how many of the window's last steps learn their own chunk's tokens (1: the last,
    the one acting predicts; obs_window: every step, as VQ-BeT's heads learn at every step). Each
    step's tokens see the observations up to that step and their own earlier tokens; the sequence
    grows to obs_window + target_steps x tokens."""
    history_dropout: float = 0.0
    """Training: the share of windows whose earlier steps are replaced by their last (the window
    acting sees at an episode's first step), so that the chunk is learnt from the current
    observation without the motion before it (0: off). Against copying the past speed: a policy
    that reads its speed off the window moves slowly after a slow start and stays slow in closed
    loop (docs/results.md)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        if isinstance(self.temperature, bool) or not self.temperature >= 0:
            raise ValueError(f"{name}: temperature must be a number >= 0, got {self.temperature!r}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"{name}: top_p must be in (0, 1], got {self.top_p!r}")
        if isinstance(self.resample, bool) or not isinstance(self.resample, int) or self.resample < 0:
            raise ValueError(f"{name}: resample must be an integer >= 0, got {self.resample!r}")
        if not isinstance(self.offset, bool):
            raise ValueError(f"{name}: offset must be true or false, got {self.offset!r}")
        self.check_positive("offset_hidden")
        steps = self.target_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= self.obs_window:
            raise ValueError(
                f"{name}: target_steps must be an integer in [1, obs_window={self.obs_window}], got {steps!r}"
            )
        if isinstance(self.focal_gamma, bool) or not self.focal_gamma >= 0:
            raise ValueError(f"{name}: focal_gamma must be a number >= 0, got {self.focal_gamma!r}")
        share = self.history_dropout
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise ValueError(f"{name}: history_dropout must be a number in [0, 1], got {share!r}")
        if self.history_dropout > 0 and steps > 1:
            raise ValueError(
                f"{name}: history_dropout needs target_steps=1 (the earlier steps' chunks are learnt "
                f"from their own history), got target_steps={steps}"
            )
        if not self.offset_loss_weight >= 0:
            raise ValueError(f"{name}: offset_loss_weight must be >= 0, got {self.offset_loss_weight!r}")


@register_policy("ar")
class ARPolicy(TokenizedPolicy):
    """Observation window -> action tokens decoded one at a time -> the tokenizer's chunk."""

    config_class = ARConfig
    config: ARConfig
    variable_length_ok = True

    def __init__(self, config: ARConfig, tokenizer: ChunkTokenizer) -> None:
        super().__init__(config, tokenizer)
        c = config
        self.vocab = tokenizer.max_vocab_size
        """V: token values; V is the end token, V + 1 the begin token (inputs only)."""
        self.variable = tokenizer.variable_length
        self.steps = tokenizer.tokens_per_chunk + int(self.variable)
        """Predicted positions: the L tokens, and the end token where lengths vary."""
        self.obs_embed = nn.Linear(self.obs_features, c.n_embd)
        self.token_embed = nn.Embedding(self.vocab + 2, c.n_embd)
        self.gpt = GPT(
            block_size=c.obs_window + self.steps,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_embd=c.n_embd,
            dropout=c.dropout,
        )
        self.head = nn.Linear(c.n_embd, self.vocab + 1)
        h, out = c.offset_hidden, c.action_chunk * c.action_dim
        layers = [nn.Linear(2 * c.n_embd, h), nn.GELU(), nn.Linear(h, h), nn.GELU(), nn.Linear(h, out)]
        self.offset_head = nn.Sequential(*layers) if c.offset else None
        self.reset_decode_stats()

    @property
    def network(self) -> nn.Module:
        return self.gpt

    # -- tokens ------------------------------------------------------------------------------
    def _targets(self, chunks: Tensor) -> Tensor:
        """Chunks (N, Ta, A) raw, in the policy's frame -> targets (N, steps): the tokens, then
        (FAST) the end token and IGNORE after it."""
        if not self.variable:
            return self.tokenizer.encode_normalized(self.tokenizer.normalizer.normalize(chunks))
        tokens, lengths = self.tokenizer.encode(chunks)
        n, width = tokens.shape
        position = torch.arange(self.steps, device=tokens.device)
        targets = torch.full((n, self.steps), IGNORE, dtype=torch.long, device=tokens.device)
        targets[:, :width] = torch.where(position[:width] < lengths[:, None], tokens, IGNORE)
        targets[torch.arange(n, device=tokens.device), lengths] = self.vocab
        return targets

    def _full_window(self, obs: Observation) -> Observation:
        """A window shorter than To padded at its start with its first step (as acting pads an
        episode's start), so that token positions are those of training."""
        missing = self.config.obs_window - state_of(obs).shape[1]
        if missing <= 0:
            return obs
        pad = lambda x: torch.cat([x[:, :1].expand(-1, missing, *x.shape[2:]), x], dim=1)  # noqa: E731
        return {k: pad(v) for k, v in obs.items()} if isinstance(obs, dict) else pad(obs)

    # -- training ----------------------------------------------------------------------------
    def forward(self, batch: dict[str, Any]) -> tuple[Tensor, dict[str, float]]:
        """Cross-entropy of every token of the chunks of the window's last `target_steps` steps,
        teacher-forced, plus the weighted L1 error of the offset-corrected chunks (with `offset`).
        The accuracies are the last step's (the chunk acting predicts)."""
        c = self.config
        obs, action = self.check_batch(batch)
        if self.training and c.history_dropout > 0:
            obs, batch = self._drop_history(obs, batch)
        state = state_of(obs)
        observed = self.observe(obs)
        k = c.target_steps
        chunks = to_relative(action[:, -k:], state[:, -k:], c.action_relative_to).flatten(0, 1)
        with torch.no_grad():
            targets = self._targets(chunks)
            if self.variable:
                # Nothing is learnt past a row's end token, so the sequence stops at the batch's
                # longest (most FAST chunks are far shorter than the longest it has seen); in a
                # causal pass the positions kept see what they saw with the rest.
                targets = targets[:, : int((targets != IGNORE).sum(dim=1).max())]
            targets = targets.view(-1, k, targets.shape[1])  # (B, K, S)
        out, last = self.teacher_forced(observed, targets)
        logits = self.head(out)
        loss = focal_loss(logits.flatten(0, 2), targets.flatten(), c.focal_gamma, ignore_index=IGNORE)
        valid = targets[:, -1] != IGNORE
        right = (logits[:, -1].argmax(-1) == targets[:, -1]) & valid
        metrics = {
            "token_loss": loss.item(),
            "token_accuracy": (right.sum() / valid.sum()).item(),
            # The first token carries most of a chunk where tokens are few (FAST on short chunks).
            "first_token_accuracy": right[:, 0].float().mean().item(),
            "sequence_accuracy": (right == valid).all(dim=1).float().mean().item(),
        }
        if last is not None:
            target = self.tokenizer.normalizer.normalize(chunks)
            offsets = self.offset_head(last.flatten(0, 1)).view_as(target)
            corrected = self.tokenizer.round_trip_normalized(target) + offsets
            mask = batch.get("action_mask")
            mask = None if mask is None else mask[:, -k:].flatten(0, 1)
            offset_loss = masked_mean((corrected - target).abs(), mask)
            loss = loss + c.offset_loss_weight * offset_loss
            metrics["offset_loss"] = offset_loss.item()
        metrics["loss"] = loss.item()
        return self.with_env_state_loss(loss, observed, batch, metrics), metrics

    def _drop_history(self, obs: Observation, batch: dict[str, Any]) -> tuple[Observation, dict[str, Any]]:
        """Each window (B, To, ...) whose draw falls under `history_dropout` made of its last step
        repeated (cameras and the env-state targets with it)."""
        state = state_of(obs)
        drop = torch.rand(state.shape[0], device=state.device) < self.config.history_dropout

        def still(x: Tensor) -> Tensor:
            return torch.where(drop.view(-1, *[1] * (x.dim() - 1)), x[:, -1:].expand_as(x), x)

        obs = {key: still(value) for key, value in obs.items()} if isinstance(obs, dict) else still(obs)
        if "env_state" in batch:
            batch = {**batch, "env_state": still(batch["env_state"])}
        return obs, batch

    def teacher_forced(self, observed: Tensor, targets: Tensor) -> tuple[Tensor, Tensor | None]:
        """Observed steps (N, To, F) and target tokens (N, S) of the last step's chunk, or (N, K, S)
        of the last K steps' chunks (IGNORE after a FAST row's end token), each given as the input
        after it -> (outputs (N, [K,] S, C) at BOS, y_1 .. y_{S-1}, the ones that predict the
        targets; with `offset`, the offset head's input (N, [K,] 2C), else None)."""
        single = targets.dim() == 2
        if single:
            targets = targets[:, None]
        n, k, s = targets.shape
        begin = torch.full_like(targets[..., :1], self.vocab + 1)
        inputs = torch.cat([begin, targets[..., :-1]], dim=-1)
        inputs = inputs.masked_fill(inputs == IGNORE, self.vocab)
        to = observed.shape[1]
        sequence = torch.cat([self.obs_embed(observed), self.token_embed(inputs).flatten(1, 2)], dim=1)
        if k == 1:  # one causal sequence
            out = self.gpt(sequence)[:, to:]
        else:
            positions, allowed = self._steps_layout(to, k, s, observed.device)
            out = self.gpt(sequence, positions=positions, allowed=allowed)[:, to:]
        out = out.reshape(n, k, s, -1)
        last = None
        if self.offset_head is not None:
            flat = targets.flatten(0, 1)
            last = self._offset_input(out.flatten(0, 1), flat, (flat != IGNORE).sum(dim=1) - 1).view(n, k, -1)
        if single:
            return out[:, 0], None if last is None else last[:, 0]
        return out, last

    @staticmethod
    @functools.lru_cache(maxsize=16)  # the same few layouts every training step
    def _steps_layout(to: int, k: int, s: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """The sequence [o_1 .. o_To, then the S token inputs of each of the last K steps' chunks]
        -> (positions (To + K S,), allowed (To + K S, To + K S)). Observations are causal; the
        tokens of step t's chunk see o_1 .. o_t and their own earlier tokens, at the positions
        To .. To + S - 1 that acting gives the chunk after the whole window."""
        length = to + k * s
        positions = torch.cat([torch.arange(to), torch.arange(to, to + s).repeat(k)]).to(device)
        allowed = torch.zeros(length, length, dtype=torch.bool)
        allowed[:to, :to] = torch.ones(to, to, dtype=torch.bool).tril()
        own = torch.ones(s, s, dtype=torch.bool).tril()
        for i in range(k):
            rows = slice(to + i * s, to + (i + 1) * s)
            allowed[rows, : to - k + i + 1] = True
            allowed[rows, rows] = own
        return positions, allowed.to(device)

    def _offset_input(self, outputs: Tensor, tokens: Tensor, final: Tensor) -> Tensor:
        """The offset head's input (N, 2C) from outputs (N, S, C), tokens (N, S) and each row's
        last token's place final (N,) (its end token where lengths vary): the output that
        predicts that token, and the token's embedding."""
        # gather, not indexing by an arange of the batch: the exported program keeps its batch dynamic
        h = outputs.gather(1, final[:, None, None].expand(-1, 1, outputs.shape[-1]))[:, 0]
        last = tokens.gather(1, final[:, None])[:, 0]
        return torch.cat([h, F.embedding(last, self.token_embed.weight)], dim=-1)

    # -- acting ------------------------------------------------------------------------------
    @torch.no_grad()
    def _sample(self, observed: Tensor) -> tuple[Tensor, Tensor | None]:
        """Observed steps (B, To, F) -> (sampled tokens (B, n <= steps), FAST rows ending with the
        end token (and holding it once emitted); with `offset`, the offset head's input (B, 2C)
        for each row's sequence, else None)."""
        c = self.config
        b = observed.shape[0]
        decoder = self.gpt.decoder(b, observed.device, observed.dtype)
        begin = self.token_embed(torch.full((b, 1), self.vocab + 1, device=observed.device))
        h = decoder.prefill(torch.cat([self.obs_embed(observed), begin], dim=1))[:, -1]
        end = torch.full((b,), self.vocab, device=observed.device)
        done = torch.zeros(b, dtype=torch.bool, device=observed.device)
        tokens, outputs = [], []  # each token and the output that predicted it
        # Which tokens may come is folded into the head's bias (-inf: never), so that each step's
        # logits are one matmul: a fixed-length family never ends (the end token's row is left
        # out); FAST never takes the unused ids of its fitted vocabulary, and after L tokens only
        # the end token is left.
        weight, bias = self.head.weight, self.head.bias
        if self.variable:
            ids = torch.arange(self.vocab + 1, device=h.device)
            allowed = (ids < self.tokenizer.vocab_size) | (ids == self.vocab)
            biases = (bias.masked_fill(~allowed, -torch.inf), bias.masked_fill(ids != self.vocab, -torch.inf))
        else:
            weight, bias = weight[: self.vocab], bias[: self.vocab]
        for i in range(self.steps):
            if self.variable:
                bias = biases[int(i == self.steps - 1)]
            token = sample_codes(F.linear(h, weight, bias), c.temperature, top_p=c.top_p)
            if self.variable:
                token = torch.where(done, end, token)
                done = done | (token == self.vocab)
            tokens.append(token)
            outputs.append(h)
            if i == self.steps - 1 or (self.variable and bool(done.all())):
                break
            h = decoder.step(F.embedding(token, self.token_embed.weight))
        sampled = torch.stack(tokens, dim=1)
        if self.offset_head is None:
            return sampled, None
        # Every FAST row holds an end token (the last step allows nothing else): its first is last.
        final = (sampled == self.vocab).int().argmax(dim=1) if self.variable else torch.full_like(end, i)
        return sampled, self._offset_input(torch.stack(outputs, dim=1), sampled, final)

    def _decode(self, tokens: Tensor, last: Tensor | None) -> tuple[Tensor, Tensor]:
        """Sampled tokens (B, n) and `_sample`'s offset input (B, 2C) or None ->
        (chunks (B, Ta, A) raw in the policy's frame, offset where there is one; valid (B,))."""
        normalizer = self.tokenizer.normalizer
        if not self.variable:
            normalised = self.tokenizer.decode_normalized(tokens)
            valid = torch.ones_like(tokens[:, 0], dtype=torch.bool)
        else:
            is_end = tokens == self.vocab
            lengths = torch.where(is_end.any(dim=1), is_end.int().argmax(dim=1), tokens.shape[1])
            padded = tokens.masked_fill(is_end, self.tokenizer.pad_id)
            chunks, valid = self.tokenizer.decode_with_validity(padded, lengths)
            if last is None:
                return chunks, valid
            normalised = normalizer.normalize(chunks)
        if last is not None:
            normalised = normalised + self.offset_head(last).view_as(normalised)
        return normalizer.unnormalize(normalised), valid

    def _predict_chunk(self, obs: Observation, goal: Tensor | None) -> Tensor:
        """Tokens sampled one at a time, decoded; invalid rows drawn again (see the module)."""
        obs = self._full_window(obs)
        observed = self.observe(obs)
        chunks, valid = self._decode(*self._sample(observed))
        if self.variable:  # (a fixed-length family decodes every sequence: nothing to count or redo)
            chunks, valid = self._resample_invalid(observed, chunks, valid)
            self.invalid_rows = ~valid  # the acting layer replaces these (ChunkActing)
        return to_absolute(chunks, state_of(obs)[:, -1], self.config.action_relative_to)

    def _resample_invalid(self, observed: Tensor, chunks: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Rows that did not decode drawn again, up to `resample` times when sampling; counted."""
        stats = self._decode_stats
        stats["chunks"] += valid.shape[0]
        stats["invalid"] += int((~valid).sum())
        for _ in range(self.config.resample if self.config.temperature > 0 else 0):
            bad = torch.nonzero(~valid).flatten()
            if not len(bad):
                break
            stats["resampled"] += len(bad)
            again, ok = self._decode(*self._sample(observed[bad]))
            chunks[bad], valid[bad] = again, ok
            stats["invalid"] += int((~ok).sum())
        return chunks, valid

    def decode_stats(self) -> dict[str, float]:
        """Since `reset_decode_stats`: chunks predicted, invalid draws (first draws and resamples),
        resampled rows, rows that acted on a fallback, and invalid_rate: invalid draws per draw.
        Empty over a fixed-length tokenizer, whose every sequence decodes."""
        if not self.variable:
            return {}
        s = dict(self._decode_stats)
        draws = s["chunks"] + s["resampled"]
        return {**s, "invalid_rate": s["invalid"] / draws if draws else 0.0}

    def reset_decode_stats(self) -> None:
        self._decode_stats = {"chunks": 0, "invalid": 0, "resampled": 0, "fallback": 0}
        self.invalid_rows = None

    def count_fallback(self, rows: int) -> None:
        self._decode_stats["fallback"] += rows

    def before_export(self) -> None:
        self.gpt.pin_decoding_weights()

    def export(self, path: Any, **options: Any) -> Path:
        if self.variable:
            raise ValueError(
                f"an 'ar' policy over the {self.tokenizer.tokenizer_type!r} tokenizer decodes its tokens "
                "through a BPE vocabulary in Python, which torch.export cannot trace: it acts eagerly "
                "(policies over fixed-length tokenizers export)"
            )
        return super().export(path, **options)
