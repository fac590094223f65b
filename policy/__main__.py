"""Pulumi policy pack entry point: `pulumi preview --policy-pack policy`.

The Pulumi CLI runs this file with `policy/` as working directory and first import path. The rules
are the `policy` package of the repository root, so the root replaces that entry; otherwise the
pack's own modules (engine, settings, ...) would also be importable as unrelated top-level names.
Building the PolicyPack starts the analyzer gRPC server and never returns.
"""

import sys
from pathlib import Path

_PACK_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _PACK_DIR]
sys.path.insert(0, str(_PACK_DIR.parent))

from pulumi_policy import PolicyPack  # noqa: E402 - after the import path is fixed

from policy.pack import (  # noqa: E402
    PACK_NAME,
    build_policies,
    initial_config,
    settings_from_environment,
)

_settings = settings_from_environment()
PolicyPack(
    name=PACK_NAME,
    description="GitOps platform guardrails: Kubernetes workloads, AWS resources, platform wiring",
    policies=build_policies(_settings),
    initial_config=initial_config(_settings),
)
