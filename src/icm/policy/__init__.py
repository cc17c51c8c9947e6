"""Policies: versioned rule sets, their loading, and the built-in ones."""

from icm.policy.load import PolicyError, builtin_policy_names, dump_policy, load_policy
from icm.policy.schema import Action, Criterion, Policy, Rule, Severity, UncertaintyPolicy

__all__ = [
    "Action",
    "Criterion",
    "Policy",
    "PolicyError",
    "Rule",
    "Severity",
    "UncertaintyPolicy",
    "builtin_policy_names",
    "dump_policy",
    "load_policy",
]
