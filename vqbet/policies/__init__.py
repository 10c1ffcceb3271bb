"""Policy families behind one interface (`Policy`), their registry and `load_policy`.

from vqbet.policies import load_policy, policy_class
policy = policy_class("vqbet").build({"obs_dim": 6, "action_dim": 2}, {"num_layers": 2})
policy = load_policy("runs/multireach/vqbet-seed0/checkpoints/best")  # any family
"""

from vqbet.policies.base import Policy, PolicyConfig, load_policy
from vqbet.policies.bet import BeTConfig, BeTPolicy
from vqbet.policies.mlp import MLPConfig, MLPPolicy
from vqbet.policies.registry import POLICIES, policy_class, register_policy
from vqbet.policies.vqbet import VQBeTConfig, VQBeTPolicy

__all__ = [
    "POLICIES",
    "BeTConfig",
    "BeTPolicy",
    "MLPConfig",
    "MLPPolicy",
    "Policy",
    "PolicyConfig",
    "VQBeTConfig",
    "VQBeTPolicy",
    "load_policy",
    "policy_class",
    "register_policy",
]
