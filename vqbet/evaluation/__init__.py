"""Evaluation: seeded vector-env rollouts of any policy (`evaluate`), offline metrics on held-out
episodes, statistics (intervals, order entropy), reports and the results tables."""

from vqbet.evaluation.offline import evaluate_offline
from vqbet.evaluation.rollouts import evaluate

__all__ = ["evaluate", "evaluate_offline"]
