"""graph.dot and the counts: one cluster per component, one resource count everywhere."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from synth.core import resource_counts
from tests.conftest import STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_each_component_is_a_cluster_and_the_counts_agree(synth_results, synth_dirs, stack):
    result, out = synth_results[stack], synth_dirs[stack]
    dot = (out / "graph.dot").read_text()
    components = [r for r in result.registrations if not r.custom]
    assert len(re.findall(r"subgraph cluster_n\d+ \{", dot)) == len(components)
    resources, count = resource_counts(result)
    assert count == len(components)
    headline = f"{resources} resources in {count} components"
    assert headline in dot and headline in (out / "summary.txt").read_text().splitlines()[0]
    assert sum(1 for line in dot.splitlines() if "fillcolor=" in line and "legend_" not in line)
    packages = {r.type.split(":", 1)[0] for r in result.registrations if r.custom}
    assert set(re.findall(r'legend_\d+ \[label="([^"]+)"', dot)) == packages


def test_labels_drop_the_components_prefix(synth_dirs):
    dot = (synth_dirs["prod"] / "graph.dot").read_text()
    assert 'label="vpc\\nVpc"' in dot and "gitops-platform-prod-vpc\\n" not in dot


def test_the_cli_prints_the_same_counts(synth_results, tmp_path):

    done = subprocess.run(
        [sys.executable, "-m", "synth", "--stack", "local", "--out", str(tmp_path / "local")],
        capture_output=True,
        text=True,
        check=False,
    )
    resources, components = resource_counts(synth_results["local"])
    assert f"synth: local: {resources} resources in {components} components ->" in done.stdout
