"""Training progress that shows wherever the output goes: a tqdm bar on a terminal, plain log lines
(step, metrics, ETA) when stdout is a file or pipe (cluster jobs, nohup, CI), where a bar would
print nothing for minutes."""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm.auto import tqdm


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """`update()` once per step, `log(step, metrics)` at logging steps, `close()` at the end.

    `enabled=False` shows nothing; otherwise a bar when stdout is a terminal, else one line per
    `log` call: `<desc> step 500/3000 (17%) loss 1.23 lr 0.00091 ... ETA 3m12s`.
    """

    def __init__(
        self, desc: str, total: int, initial: int = 0, enabled: bool = True, unit: str = "step"
    ) -> None:
        self.desc, self.total, self.start, self.unit = desc, total, initial, unit
        self.started = time.perf_counter()
        terminal = sys.stdout.isatty()
        self.bar = (
            tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)
            if enabled and terminal
            else None
        )
        self.plain = enabled and not terminal

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update()

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Show `metrics` after `step` of `total` steps (or episodes, ...: the `unit`)."""
        if self.bar is not None:
            self.bar.set_postfix({k: _format(v) for k, v in metrics.items()}, refresh=False)
        elif self.plain:
            done = step - self.start
            eta = (time.perf_counter() - self.started) / done * (self.total - step) if done > 0 else 0.0
            fields = " ".join(f"{k} {_format(v)}" for k, v in metrics.items())
            print(
                f"{self.desc} {self.unit} {step}/{self.total} ({step / max(self.total, 1):.0%}) {fields} "
                f"ETA {_duration(eta)}",
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
