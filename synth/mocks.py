"""Pulumi mock runtime for the offline synth: answers every resource and invoke the program makes
with realistic, deterministic AWS-shaped values, and records what the program asked for."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.sync_await import _sync_await

ACCOUNT_ID = "123456789012"
SECRET = "[secret]"
_SECRET_SIG = rpc._special_secret_sig
_SIG = rpc._special_sig_key


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _fake_pem(label: str, seed: str) -> str:
    body = base64.b64encode(hashlib.sha512(seed.encode()).digest() * 3).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def _number(value: Any) -> Any:
    """Protobuf carries every number as a float; 22.0 is written back as 22."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_number(v) for v in value]
    return value


def redact(value: Any) -> Any:
    """Replace every secret (as the SDK sends it) by "[secret]"."""
    if isinstance(value, dict):
        if value.get(_SIG) == _SECRET_SIG:
            return SECRET
        if _SIG in value and "urn" in value:
            return value["urn"]
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return _number(value)


def reveal(value: Any) -> Any:
    """The value with every secret unwrapped: for in-memory checks only, never written out."""
    if isinstance(value, dict):
        if value.get(_SIG) == _SECRET_SIG:
            return reveal(value["value"])
        if _SIG in value and "urn" in value:
            return value["urn"]
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return _number(value)


def _secret(value: Any) -> dict:
    return {_SIG: _SECRET_SIG, "value": value}


@dataclass
class Registration:
    urn: str
    id: str
    type: str
    name: str
    parent: str | None
    custom: bool
    provider: str | None
    depends_on: list[str]
    protect: bool
    inputs: dict
    """Inputs with secrets replaced by "[secret]", as written to resources.json."""
    plain_inputs: dict
    """Inputs with secrets revealed, for tests that follow a value through the program."""


@dataclass
class SynthMocks(pulumi.runtime.Mocks):
    region: str = "us-east-1"
    secret_values: set[str] = field(default_factory=set)
    """Every value the mocks handed out as a secret (the secret scan looks for them)."""

    # -- resources ------------------------------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        check_name_limits(args.typ, args.name, args.inputs)
        outputs = dict(args.inputs)
        resource_id = f"{args.name}-{_digest(args.typ, args.name, length=8)}"
        maker = _OUTPUTS.get(args.typ)
        if maker is not None:
            resource_id, extra = maker(self, args, outputs)
            outputs.update(extra)
        elif args.typ.startswith("kubernetes:") and "metadata" in outputs:
            meta = dict(outputs.get("metadata") or {})
            meta.setdefault("name", f"{args.name}-{_digest(args.name, length=8)}")
            outputs["metadata"] = meta
        return resource_id, outputs

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{ACCOUNT_ID}:{resource}"

    # -- invokes --------------------------------------------------------------------------------

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        handler = _INVOKES.get(args.token)
        if handler is None:
            raise NotImplementedError(f"the synth mocks do not answer invoke {args.token}")
        return handler(self, args.args)


# The AWS provider auto-names these from the logical name plus a dash and 7 random characters, or
# takes `name`; AWS refuses longer names, so the synth must too (pulumi-aws tfbridge.AutoName).
NAME_LIMITS = {
    "aws:lb/loadBalancer:LoadBalancer": 32,
    "aws:lb/targetGroup:TargetGroup": 32,
    "aws:iam/role:Role": 64,
    "aws:iam/policy:Policy": 128,
    "aws:iam/instanceProfile:InstanceProfile": 128,
    "aws:ec2/securityGroup:SecurityGroup": 255,
}
BUCKET_PREFIX_LIMIT = 37
NAME_PREFIX_LIMITS = {"aws:lb/targetGroup:TargetGroup": 6, "aws:lb/loadBalancer:LoadBalancer": 6}
"""AWS fills the rest of the 32 characters with a random suffix."""


def check_name_limits(typ: str, logical: str, inputs: dict) -> None:
    limit = NAME_LIMITS.get(typ)
    name_prefix = inputs.get("namePrefix")
    if name_prefix is not None:
        if len(name_prefix) > NAME_PREFIX_LIMITS.get(typ, limit or 255):
            raise ValueError(
                f"{typ} {logical}: name_prefix {name_prefix!r} is longer than AWS allows"
            )
    elif limit is not None:
        name = inputs.get("name") or f"{logical}-xxxxxxx"
        if len(name) > limit:
            raise ValueError(f"{typ} {logical}: name {name!r} is longer than AWS allows ({limit})")
    prefix = inputs.get("bucketPrefix")
    if typ == "aws:s3/bucket:Bucket" and prefix and len(prefix) > BUCKET_PREFIX_LIMIT:
        raise ValueError(
            f"{logical}: bucket_prefix {prefix!r} is over {BUCKET_PREFIX_LIMIT} characters"
        )


def _public_ip(name: str) -> str:
    return f"203.0.113.{int(_digest(name, length=4), 16) % 200 + 10}"


def _aws_id(prefix: str):
    def make(m: SynthMocks, a: pulumi.runtime.MockResourceArgs, _o: dict) -> tuple[str, dict]:
        rid = f"{prefix}-{_digest(a.typ, a.name)}"
        return rid, {"arn": m.arn("ec2", f"{prefix}/{rid}")}

    return make


def _eip(m, a, _o):
    rid = f"eipalloc-{_digest(a.name)}"
    return rid, {"allocationId": rid, "publicIp": _public_ip(a.name), "publicDns": ""}


def _instance(m, a, o):
    rid = f"i-{_digest(a.name)}"
    return rid, {
        "arn": m.arn("ec2", f"instance/{rid}"),
        "privateIp": o.get("privateIp", "10.0.0.10"),
        "primaryNetworkInterfaceId": f"eni-{_digest(a.name)}",
        "instanceState": "running",
    }


def _launch_template(m, a, _o):
    rid = f"lt-{_digest(a.name)}"
    return rid, {
        "arn": m.arn("ec2", f"launch-template/{rid}"),
        "latestVersion": 1,
        "defaultVersion": 1,
    }


def _load_balancer(m, a, _o):
    short = _digest(a.name, length=16)
    return m.arn("elasticloadbalancing", f"loadbalancer/net/{a.name[:20]}/{short}"), {
        "arn": m.arn("elasticloadbalancing", f"loadbalancer/net/{a.name[:20]}/{short}"),
        "dnsName": f"{a.name[:20]}-{short}.elb.{m.region}.amazonaws.com",
        "zoneId": "Z2IFOLAFXWLO4F",
    }


def _arn_as_id(service: str, kind: str):
    def make(m, a, _o):
        arn = m.arn(service, f"{kind}/{a.name}/{_digest(a.name, length=16)}")
        return arn, {"arn": arn}

    return make


def _kms_key(m, a, _o):
    d = _digest(a.name, length=32)
    key_id = f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"
    return key_id, {"keyId": key_id, "arn": m.arn("kms", f"key/{key_id}")}


def _bucket(m, a, o):
    name = o.get("bucket") or f"{o.get('bucketPrefix', a.name)}{_digest(a.name, length=12)}"
    return name, {
        "bucket": name,
        "arn": f"arn:aws:s3:::{name}",
        "bucketDomainName": f"{name}.s3.amazonaws.com",
        "region": m.region,
    }


def _secret_resource(m, a, o):
    name = f"{o.get('namePrefix', a.name)}{_digest(a.name, length=6)}"
    arn = m.arn("secretsmanager", f"secret:{name}")
    return arn, {"arn": arn, "name": name}


def _iam_named(kind: str):
    def make(m, a, o):
        name = o.get("name") or f"{a.name}-{_digest(a.name, length=7)}"
        return name, {
            "name": name,
            "arn": m.arn("iam", f"{kind}/{name}", region=False),
            "uniqueId": f"AROA{_digest(a.name, length=17).upper()}",
        }

    return make


def _ecr_repository(m, a, o):
    name = o.get("name", a.name)
    return name, {
        "arn": m.arn("ecr", f"repository/{name}"),
        "registryId": ACCOUNT_ID,
        "repositoryUrl": f"{ACCOUNT_ID}.dkr.ecr.{m.region}.amazonaws.com/{name}",
    }


def _private_key(m, a, _o):
    pem = _fake_pem("PRIVATE KEY", f"{a.name}/key")
    m.secret_values.add(pem)
    return a.name, {"privateKeyPem": _secret(pem), "publicKeyPem": _fake_pem("PUBLIC KEY", a.name)}


def _cert(m, a, _o):
    return a.name, {"certPem": _fake_pem("CERTIFICATE", f"{a.name}/cert")}


def _csr(m, a, _o):
    return a.name, {"certRequestPem": _fake_pem("CERTIFICATE REQUEST", a.name)}


def _password(m, name: str, length: int) -> str:
    value = (hashlib.sha256(f"{name}/password".encode()).hexdigest() * 4)[:length]
    m.secret_values.add(value)
    return value


def _random_password(m, a, o):
    return a.name, {"result": _secret(_password(m, a.name, int(o.get("length", 32))))}


def _random_id(m, a, o):
    return a.name, {"hex": _digest(a.typ, a.name, length=2 * int(o.get("byteLength", 8)))}


def _dynamic(m, a, o):
    if o.get("password_length"):
        value = _password(m, a.name, int(o["password_length"]))
        return a.name, {"result": _secret(value), "bcrypt_hash": _secret(f"$2b$10${value}")}
    if o.get("kubeconfig_path"):
        ca = _fake_pem("CERTIFICATE", f"{a.name}/ca")
        key = _fake_pem("EC PRIVATE KEY", f"{a.name}/client-key")
        m.secret_values.add(key)
        return a.name, {
            "api_url": "https://127.0.0.1:6443",
            "ca_pem": ca,
            "client_cert_pem": _fake_pem("CERTIFICATE", f"{a.name}/client"),
            "client_key_pem": _secret(key),
            "kubeconfig": _secret(f"apiVersion: v1\nkind: Config\n# {a.name}\n"),
        }
    return a.name, {}


_OUTPUTS = {
    "aws:ec2/vpc:Vpc": _aws_id("vpc"),
    "aws:ec2/subnet:Subnet": _aws_id("subnet"),
    "aws:ec2/internetGateway:InternetGateway": _aws_id("igw"),
    "aws:ec2/routeTable:RouteTable": _aws_id("rtb"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _aws_id("rtbassoc"),
    "aws:ec2/natGateway:NatGateway": _aws_id("nat"),
    "aws:ec2/eip:Eip": _eip,
    "aws:ec2/eipAssociation:EipAssociation": _aws_id("eipassoc"),
    "aws:ec2/securityGroup:SecurityGroup": _aws_id("sg"),
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": _aws_id("sg"),
    "aws:ec2/flowLog:FlowLog": _aws_id("fl"),
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _aws_id("sgr"),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": _aws_id("sgr"),
    "aws:ec2/instance:Instance": _instance,
    "aws:ec2/launchTemplate:LaunchTemplate": _launch_template,
    "aws:lb/loadBalancer:LoadBalancer": _load_balancer,
    "aws:lb/targetGroup:TargetGroup": _arn_as_id("elasticloadbalancing", "targetgroup"),
    "aws:lb/listener:Listener": _arn_as_id("elasticloadbalancing", "listener"),
    "aws:kms/key:Key": _kms_key,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:secretsmanager/secret:Secret": _secret_resource,
    "aws:iam/role:Role": _iam_named("role"),
    "aws:iam/instanceProfile:InstanceProfile": _iam_named("instance-profile"),
    "aws:iam/policy:Policy": _iam_named("policy"),
    "aws:ecr/repository:Repository": _ecr_repository,
    "tls:index/privateKey:PrivateKey": _private_key,
    "tls:index/selfSignedCert:SelfSignedCert": _cert,
    "tls:index/locallySignedCert:LocallySignedCert": _cert,
    "tls:index/certRequest:CertRequest": _csr,
    "random:index/randomPassword:RandomPassword": _random_password,
    "random:index/randomId:RandomId": _random_id,
    "pulumi-python:dynamic:Resource": _dynamic,
}


def _zones(m: SynthMocks, _args: dict) -> dict:
    names = [f"{m.region}{s}" for s in "abc"]
    short = "".join(part[0] for part in m.region.split("-")[:-1]) + m.region.rsplit("-", 1)[1]
    return {
        "id": m.region,
        "names": names,
        "zoneIds": [f"{short}-az{i}" for i in (1, 2, 3)],
        "groupNames": [m.region] * 3,
        "state": "available",
    }


def _ami(m: SynthMocks, args: dict) -> dict:
    arch = next(
        (f["values"][0] for f in args.get("filters", []) if f["name"] == "architecture"), "x86_64"
    )
    name = f"al2023-ami-2023.9.20251110.1-kernel-6.12-{arch}"
    image = f"ami-{_digest(name)}"
    return {
        "id": image,
        "imageId": image,
        "name": name,
        "architecture": arch,
        "ownerId": "137112412989",
        "rootDeviceName": "/dev/xvda",
        "virtualizationType": "hvm",
        "mostRecent": True,
    }


def _subnet(m: SynthMocks, args: dict) -> dict:
    sid = args.get("id", "subnet-0")
    return {
        "id": sid,
        "cidrBlock": f"10.99.{int(_digest(sid, length=2), 16) % 250}.0/24",
        "availabilityZone": f"{m.region}a",
        "vpcId": "vpc-0existing",
    }


def _caller(m: SynthMocks, _args: dict) -> dict:
    return {
        "accountId": ACCOUNT_ID,
        "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/deployer",
        "id": ACCOUNT_ID,
        "userId": "AIDAEXAMPLE",
    }


_INVOKES = {
    "aws:index/getAvailabilityZones:getAvailabilityZones": _zones,
    "aws:ec2/getAmi:getAmi": _ami,
    "aws:ec2/getSubnet:getSubnet": _subnet,
    "aws:index/getCallerIdentity:getCallerIdentity": _caller,
}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, plus a record of each registration as the engine would see it and
    the engine's marking of `additionalSecretOutputs` as secrets."""

    def __init__(self, mocks: SynthMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        provider = request.provider.rsplit("::", 1)[0] if request.provider else None
        sent = rpc.deserialize_properties(request.object)
        self.registrations.append(
            Registration(
                urn=response.urn,
                id=response.id,
                type=request.type,
                name=request.name,
                parent=request.parent or None,
                custom=request.custom,
                provider=provider,
                depends_on=sorted(set(request.dependencies)),
                protect=request.protect,
                inputs=redact(sent),
                plain_inputs=reveal(sent),
            )
        )
        secret_keys = set(request.additionalSecretOutputs)
        if not secret_keys:
            return response
        state = self.resources[response.urn].state
        marked = {
            k: (_secret(v) if k in secret_keys and not _is_secret(v) else v)
            for k, v in state.items()
        }
        for key in secret_keys & state.keys():
            value = marked[key]["value"]
            if isinstance(value, str) and value:
                self.mocks.secret_values.add(value)
        obj = _sync_await(rpc.serialize_properties(marked, {}))
        return resource_pb2.RegisterResourceResponse(urn=response.urn, id=response.id, object=obj)


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SIG) == _SECRET_SIG
