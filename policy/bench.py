"""Benchmarks: checker throughput and the Pulumi pack's latency over gRPC.

    python -m policy.bench [--objects 10000] [--requests 500]

1. evaluate() over a generated set of Kubernetes objects held in memory;
2. the checker CLI path over the same set written as YAML files (read, parse, evaluate, report);
3. per-resource Analyze latency and one AnalyzeStack call, against the pack process started the
   way the Pulumi CLI starts it.

The generated set looks like an Argo CD repository: apps of a Deployment (every seventh a
StatefulSet), Service, PodDisruptionBudget, Ingress and ConfigMap spread over 40 namespaces, with
some HorizontalPodAutoscalers and a share of deliberate violations so every rule has work to do.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from policy import check
from policy.engine import evaluate, kubernetes_token

PACK_DIR = Path(__file__).resolve().parent
NAMESPACES = 40


def _container(app: int) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "app",
        "image": f"registry.example.com/team/app-{app}:{'latest' if app % 10 == 0 else '1.4.2'}",
        "ports": [{"containerPort": 8080}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1" if app % 6 == 0 else "300m", "memory": "256Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }
    if app % 5 == 0:
        del container["lifecycle"]
    return container


def _app(app: int) -> Iterator[dict[str, Any]]:
    namespace, name = f"team-{app % NAMESPACES}", f"app-{app}"
    labels = {"app.kubernetes.io/name": name}
    meta = {"name": name, "namespace": namespace, "labels": labels}
    pod_spec: dict[str, Any] = {
        "containers": [_container(app)],
        "dnsConfig": {"options": [{"name": "single-request-reopen"}]},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": labels},
            }
        ],
    }
    kind = "StatefulSet" if app % 7 == 0 else "Deployment"
    yield {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": meta,
        "spec": {
            "replicas": 1 if app % 8 == 0 else 3,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
    yield {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    }
    if app % 9 == 0:
        yield {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": meta,
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
                "minReplicas": 2,
                "maxReplicas": 6,
            },
        }
    else:
        yield {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
        }
    host = f"app-{app // 2 if app % 11 == 0 else app}.apps.example.com"
    yield {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": {
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": name, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    yield {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"LOG_LEVEL": "info"}}


def generate(count: int) -> list[dict[str, Any]]:
    """`count` objects, app by app."""
    objects: list[dict[str, Any]] = []
    app = 0
    while len(objects) < count:
        objects.extend(_app(app))
        app += 1
    return objects[:count]


def _timed(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_checker(objects: list[dict[str, Any]]) -> dict[str, float]:
    """Objects per second for evaluate() in memory and for the CLI over files on disk."""
    in_memory, findings = _timed(lambda: evaluate(manifests=objects), repeat=3)
    with tempfile.TemporaryDirectory() as tmp:
        per_file = 5
        for start in range(0, len(objects), per_file):
            Path(tmp, f"app-{start // per_file:05d}.yaml").write_text(
                yaml.safe_dump_all(objects[start : start + per_file], sort_keys=False)
            )
        cli, status = _timed(
            lambda: check.main([tmp, "--format", "json"], stdout=io.StringIO()), repeat=3
        )
    return {
        "objects": len(objects),
        "findings": len(findings),
        "evaluate_s": in_memory,
        "evaluate_per_s": len(objects) / in_memory,
        "cli_s": cli,
        "cli_per_s": len(objects) / cli,
        "cli_status": status,
    }


def bench_grpc(requests: int, stack_objects: list[dict[str, Any]]) -> dict[str, float]:
    """Analyze latency per resource and one AnalyzeStack call, against the pack process."""
    import grpc
    from google.protobuf import empty_pb2, struct_pb2
    from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

    def request(token: str, props: dict[str, Any], name: str) -> dict[str, Any]:
        struct = struct_pb2.Struct()
        struct.update(props)
        return {
            "type": token,
            "properties": struct,
            "name": name,
            "urn": f"urn:pulumi:bench::gitops-platform::{token}::{name}",
        }

    samples = [
        request(
            "aws:ec2/launchTemplate:LaunchTemplate",
            {"metadataOptions": {"httpTokens": "optional"}},
            "agents",
        ),
        request(
            "aws:ec2/securityGroup:SecurityGroup",
            {
                "ingress": [
                    {"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}
                ]
            },
            "sg",
        ),
        request(kubernetes_token("apps/v1", "Deployment"), stack_objects[0], "web"),
    ]
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", "."],
        cwd=PACK_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.perf_counter()
        assert process.stdout is not None
        port = int(process.stdout.readline())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        stub.GetAnalyzerInfo(empty_pb2.Empty())
        startup = time.perf_counter() - started
        latencies = []
        for index in range(requests):
            message = analyzer_pb2.AnalyzeRequest(**samples[index % len(samples)])
            start = time.perf_counter()
            stub.Analyze(message)
            latencies.append(time.perf_counter() - start)
        resources = [
            analyzer_pb2.AnalyzerResource(
                **request(
                    kubernetes_token(obj["apiVersion"], obj["kind"]), obj, f"{obj['kind']}-{index}"
                )
            )
            for index, obj in enumerate(stack_objects)
        ]
        stack_s, _ = _timed(
            lambda: stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=resources)),
            repeat=3,
        )
        channel.close()
    finally:
        process.terminate()
        process.wait(10)
    latencies.sort()
    return {
        "startup_s": startup,
        "requests": requests,
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
        "mean_ms": 1000 * statistics.fmean(latencies),
        "stack_objects": len(stack_objects),
        "stack_s": stack_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m policy.bench", description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500, help="Analyze calls to time")
    parser.add_argument("--stack-objects", type=int, default=1_000)
    args = parser.parse_args(argv)
    objects = generate(args.objects)
    results = {
        "checker": bench_checker(objects),
        "grpc": bench_grpc(args.requests, generate(args.stack_objects)),
    }
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
