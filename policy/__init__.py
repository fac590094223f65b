"""Platform guardrails: policy rules written once, run by the checker CLI, the synth and Pulumi.

from policy import PolicySettings, evaluate
settings = PolicySettings.from_stack_config(stack_file["config"])
findings = evaluate(resources, manifests, settings)
blocking = [f for f in findings if f.enforcement == "mandatory"]
"""

from policy.engine import Finding, Manifest, evaluate
from policy.rules import RULES, Enforcement, Rule
from policy.settings import PolicyConfigError, PolicySettings

__all__ = [
    "RULES",
    "Enforcement",
    "Finding",
    "Manifest",
    "PolicyConfigError",
    "PolicySettings",
    "Rule",
    "evaluate",
]
