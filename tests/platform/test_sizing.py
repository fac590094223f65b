"""The sizing table passes the same guardrails the apps do, at every size."""

from __future__ import annotations

import pytest

from components.platform import sizing
from policy.engine import evaluate


@pytest.mark.parametrize("size", sizing.SIZES)
def test_every_container_of_the_table_passes_the_resource_rules(size):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"sizing-{size}", "namespace": "platform"},
        "spec": {
            "containers": [
                {"name": f"{release}-{container}", "image": "example:1", "resources": r}
                for release, containers in sizing.RESOURCES.items()
                for container in containers
                for r in [sizing.resources(release, container, size)]
            ]
        },
    }
    found = evaluate(manifests=[pod], rules=["resources-requests-limits", "limit-request-ratio"])
    # Not even the advisory tier (above 2x): the table's limits are twice the requests.
    assert found == []


def test_production_runs_three_of_every_controller():
    for release, workloads in sizing.REPLICAS.items():
        for workload, counts in workloads.items():
            assert counts["ha"] >= 3, (release, workload)
    assert sizing.replicas("vault", "server", "ha") == 3
    assert sizing.replicas("argocd", "redis-ha", "ha") == 3


def test_an_unknown_container_names_itself():
    with pytest.raises(KeyError, match="'nope' of release 'vault'"):
        sizing.resources("vault", "nope", "small")
