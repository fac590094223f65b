"""Pulumi policy pack entry point: `pulumi preview --policy-pack policy`.

The Pulumi CLI runs this file with the pack folder as working directory and first import path. A
published pack lands in a folder of another name, so the folder is loaded as the package `policy`
whatever it is called, and taken off the import path: otherwise its modules (engine, settings, ...)
would also be importable as unrelated top-level names. The pack imports nothing from outside its
folder; `requirements.txt` lists what it needs. Building the PolicyPack starts the analyzer gRPC
server and never returns.
"""

import importlib.util
import sys
from pathlib import Path

_PACK_DIR = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _PACK_DIR]
_spec = importlib.util.spec_from_file_location(
    "policy", _PACK_DIR / "__init__.py", submodule_search_locations=[str(_PACK_DIR)]
)
sys.modules["policy"] = _package = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_package)

from pulumi_policy import PolicyPack  # noqa: E402 - after the package is registered

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
