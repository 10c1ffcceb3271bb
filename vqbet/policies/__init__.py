"""Policy families behind one interface (`Policy`), their registry and `load_policy`.

from vqbet.policies import load_policy, policy_class
policy = policy_class("vqbet").build({"obs_dim": 6, "action_dim": 2}, {"name": "rvq", "num_layers": 2})
policy = policy_class("vqbet").build({"obs_dim": 6, "action_dim": 2}, {"name": "kmeans"})  # BeT
policy = load_policy("runs/multireach/vqbet-seed0/checkpoints/best")  # any family
"""

from vqbet.policies.ar import ARConfig, ARPolicy
from vqbet.policies.base import Policy, PolicyConfig, load_policy
from vqbet.policies.mlp import MLPConfig, MLPPolicy
from vqbet.policies.registry import POLICIES, policy_class, register_policy
from vqbet.policies.tokenized import TokenizedPolicy
from vqbet.policies.vqbet import VQBeTConfig, VQBeTPolicy

__all__ = [
    "POLICIES",
    "ARConfig",
    "ARPolicy",
    "MLPConfig",
    "MLPPolicy",
    "Policy",
    "PolicyConfig",
    "TokenizedPolicy",
    "VQBeTConfig",
    "VQBeTPolicy",
    "load_policy",
    "policy_class",
    "register_policy",
]
