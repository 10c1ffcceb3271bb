"""The run folder's layout, in one place: what the training job, phase 2 and evaluation write where.

<run>/config.yaml              the resolved config the run was started with
<run>/checkpoints/last         resume state (weights, optimizer, RNG, step), every checkpoint_every
<run>/checkpoints/best         the acting weights with the lowest validation loss
<run>/train_history.json       the logged training metrics
<run>/tensorboard/             curves
<run>/results.json, report.md  the final evaluation (plots and video beside them)
<run>/eval/<checkpoint>/       a later evaluation of one checkpoint (scripts/eval.py)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @classmethod
    def of(cls, path: str | os.PathLike) -> RunDir:
        return cls(Path(path))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunDir:
        """The run a checkpoint folder (<run>/checkpoints/<name>) belongs to."""
        return cls(Path(checkpoint).parent.parent)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best"

    @property
    def history(self) -> Path:
        return self.root / "train_history.json"

    @property
    def results(self) -> Path:
        """The final evaluation's results.json (an evaluation's own folder has one too)."""
        return self.root / "results.json"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def evaluation(self, checkpoint: str | os.PathLike) -> Path:
        """Where scripts/eval.py reports on `checkpoint` unless told otherwise."""
        return self.root / "eval" / Path(checkpoint).name
