"""Phase 2: the training loop (`train_policy`), its resumable state, and where it runs (device,
bf16 autocast, DDP, compile)."""

from vqbet.training.device import compile_network, resolve_device, setup_distributed, training_autocast
from vqbet.training.loop import PolicyTrainConfig, TrainingDiverged, train_policy

__all__ = [
    "PolicyTrainConfig",
    "TrainingDiverged",
    "compile_network",
    "resolve_device",
    "setup_distributed",
    "train_policy",
    "training_autocast",
]
