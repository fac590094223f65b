"""The policy pack on its own, as `pulumi policy publish` ships it.

A published pack is the pack folder alone, under another name, run in a virtualenv made from its
requirements.txt. The tests copy the folder's tracked files somewhere else, run the pack there
with such a virtualenv (policy/install.py, the same one `make e2e` uses), and check that it serves
every rule and imports nothing from outside its folder.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import empty_pb2
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from policy import install
from policy.rules import RULES
from tests.policy.conftest import REPO_ROOT
from tests.policy.test_policy_pack_grpc import analyze, start_pack


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            found[canonicalize_name(requirement.name)] = str(requirement.specifier)
    return found


@pytest.fixture(scope="module")
def pack_python() -> str:
    try:
        return str(install.python_of(install.ensure(install.cached_location())))
    except install.VenvError as exc:
        pytest.fail(f"{exc}\n(`make policy-venv` builds the same thing into policy/venv)")


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pack's tracked files in a folder named as a published pack would be."""
    folder = tmp_path_factory.mktemp("policies") / "gitops-platform-guardrails-v0.1.0"
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "policy"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, tracked.split("\0")):
        target = folder / Path(rel).relative_to("policy")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / rel, target)
    return folder


@pytest.fixture(scope="module")
def analyzer(pack_python: str, published: Path) -> Iterator[Any]:
    with start_pack(python=pack_python, folder=published) as stub:
        yield stub


def test_requirements_match_the_project_pins() -> None:
    """The pack is tested with the project's versions, so it must ask for the same ones."""
    own = pins(REPO_ROOT / "policy" / "requirements.txt")
    project = pins(REPO_ROOT / "constraints.txt")
    assert {"pulumi", "pulumi-policy", "pydantic", "pyyaml"} <= own.keys()
    assert {name: spec for name, spec in own.items() if project.get(name) != spec} == {}


def test_published_pack_serves_every_rule(analyzer: Any) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert {policy.name for policy in info.policies} >= {rule.id for rule in RULES}


def test_published_pack_judges_resources(analyzer: Any) -> None:
    open_ssh = {
        "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]
    }
    found = analyze(analyzer, "aws:ec2/securityGroup:SecurityGroup", open_ssh)
    assert [d.policyName for d in found] == ["aws-no-public-ssh"]


def test_published_pack_imports_only_its_folder(pack_python: str, published: Path) -> None:
    """Every module the pack loads comes from its folder, the virtualenv or the standard library."""
    probe = textwrap.dedent(
        """
        import runpy, sys
        import pulumi_policy
        pulumi_policy.PolicyPack = lambda **kwargs: None  # build the policies, serve nothing
        runpy.run_path(".", run_name="__main__")
        for name, module in sorted(sys.modules.items()):
            print(name, getattr(module, "__file__", None) or "")
        """
    )
    out = subprocess.run(
        [pack_python, "-c", probe], cwd=published, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    loaded = dict(line.partition(" ")[::2] for line in out.stdout.splitlines())
    assert loaded["policy.pack"].startswith(str(published))
    outside = {
        name: path
        for name, path in loaded.items()
        if path.startswith(str(REPO_ROOT)) or name.split(".")[0] in {"components", "cost", "synth"}
    }
    assert outside == {}
