"""The two documented destroys (docs/operations.md, "Destroy") replayed on the synth with the real
CLI's rules, and names that two stacks in one AWS account never both claim."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from components.k3s.cluster import short_name
from synth.core import synthesize
from synth.mocks import Registration
from tests.conftest import REPO, STACKS

AWS_STACKS = [s for s in STACKS if s != "local"]
DATA = {
    "aws:kms/key:Key",
    "aws:s3/bucket:Bucket",
    "aws:secretsmanager/secret:Secret",
    "aws:ecr/repository:Repository",
}
"""What holds data: snapshots, logs, Vault's seal, the token that decrypts snapshots, images."""
BILLED_BY_THE_HOUR = {
    "aws:ec2/instance:Instance",
    "aws:autoscaling/group:Group",
    "aws:ec2/natGateway:NatGateway",
    "aws:ec2/eip:Eip",
    "aws:lb/loadBalancer:LoadBalancer",
}
NAMED_BY_THE_PROGRAM = ("name",)
"""Inputs that are a resource's own AWS name. `namePrefix`/`bucketPrefix` get a unique suffix from
the provider, and `bucket` on a bucket's settings names the bucket they belong to."""


def kept_by_exclude_protected(registrations: list[Registration]) -> set[str]:
    """URNs `pulumi destroy --exclude-protected` leaves in place. The CLI (pulumi/pkg
    cmd/pulumi/operations/destroy.go, getProtectedExcludes) excludes every protected resource
    with its transitive dependencies (resource/graph DependenciesOf): dependencies, the provider,
    the parent, and the children a component dependency registered before the dependent."""
    order = {r.urn: i for i, r in enumerate(registrations)}
    by_urn = {r.urn: r for r in registrations}
    children: dict[str, list[str]] = {}
    for r in registrations:
        if r.parent:
            children.setdefault(r.parent, []).append(r.urn)
    kept: set[str] = set()
    todo = [r.urn for r in registrations if r.protect]
    while todo:
        urn = todo.pop()
        if urn in kept or urn not in by_urn:
            continue
        kept.add(urn)
        r = by_urn[urn]
        todo += [d for d in (*r.depends_on, r.parent, r.provider) if d]
        for dep in r.depends_on:
            if dep in by_urn and not by_urn[dep].custom:
                todo += [c for c in children.get(dep, []) if order[c] < order[urn]]
    return kept


def _with(stack: str, tmp_path, **changes) -> object:
    values = yaml.safe_load((REPO / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    values["config"].update(changes)
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(values))
    return synthesize(stack, path)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_what_holds_data_is_protected(synth_results, stack):
    result = synth_results[stack]
    protected = {r.type for r in result.registrations if r.protect}
    assert protected == DATA
    for reg in result.registrations:
        if reg.type in DATA:
            assert reg.protect, reg.urn


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_destroy_exclude_protected_keeps_the_data_and_nothing_billed_by_the_hour(
    synth_results, stack
):
    result = synth_results[stack]
    kept = kept_by_exclude_protected(result.registrations)
    types = {r.type for r in result.registrations if r.urn in kept}
    assert types >= DATA
    assert not types & BILLED_BY_THE_HOUR, types & BILLED_BY_THE_HOUR
    # The key policy names the node roles, so they stay with the key (docs/operations.md).
    custom = {r.type for r in result.registrations if r.urn in kept and r.custom}
    assert custom == DATA | {"aws:iam/role:Role", "pulumi:providers:aws"}


def test_the_replay_follows_parents_providers_and_dependencies(synth_results):
    result = synth_results["dev"]
    (key,) = result.of_type("aws:kms/key:Key")
    kept = kept_by_exclude_protected(result.registrations)
    assert key.parent in kept and key.provider in kept
    assert set(key.depends_on) <= kept
    (instance, *_) = result.of_type("aws:ec2/instance:Instance")
    assert instance.urn not in kept


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_decommission_lifts_every_protection(tmp_path, stack):
    result = _with(stack, tmp_path, **{"platform:decommission": True})
    assert [r.urn for r in result.registrations if r.protect] == []
    assert kept_by_exclude_protected(result.registrations) == set()
    for bucket in result.of_type("aws:s3/bucket:Bucket"):
        assert bucket.inputs["forceDestroy"] is True, bucket.urn
    for repo in result.of_type("aws:ecr/repository:Repository"):
        assert repo.inputs["forceDelete"] is True, repo.urn
    for lb in result.of_type("aws:lb/loadBalancer:LoadBalancer"):
        assert lb.inputs["enableDeletionProtection"] is False, lb.urn


def own_names(result) -> dict[str, str]:
    """AWS name -> URN, for every AWS resource the program names itself."""
    return {
        reg.inputs[key]: reg.urn
        for reg in result.registrations
        if reg.type.startswith("aws:") and reg.custom
        for key in NAMED_BY_THE_PROGRAM
        if isinstance(reg.inputs.get(key), str)
    }


def name_clashes(results: dict) -> list[str]:
    seen: dict[str, str] = {}
    clashes = []
    for stack, result in sorted(results.items()):
        for name, urn in own_names(result).items():
            if name in seen and seen[name] != stack:
                clashes.append(f"{name}: {seen[name]} and {stack} ({urn})")
            seen.setdefault(name, stack)
    return clashes


def test_no_two_stacks_claim_one_aws_name(synth_results):
    assert name_clashes({s: synth_results[s] for s in AWS_STACKS}) == []


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_every_name_the_program_picks_carries_the_stack(synth_results, stack):
    base = f"gitops-platform-{stack}"
    names = own_names(synth_results[stack])
    assert f"{base}/hello" in names, "ECR repositories are namespaced by the stack"
    for name in names:
        assert base in name or name == short_name(base), name


def test_the_clash_check_finds_a_shared_name(synth_results):
    dev = synth_results["dev"]
    (repo,) = dev.of_type("aws:ecr/repository:Repository")
    stolen = dataclasses.replace(repo, inputs={**repo.inputs, "name": "gitops-platform-prod/hello"})
    tampered = dataclasses.replace(dev, registrations=[*dev.registrations, stolen])
    (clash,) = name_clashes({"dev": tampered, "prod": synth_results["prod"]})
    assert clash.startswith("gitops-platform-prod/hello: dev and prod")
