"""Stack files written by `pulumi new` from the template hold sections as JSON text."""

from __future__ import annotations

import json

import yaml

from components import config
from synth.core import synthesize
from tests.conftest import REPO


def test_template_defaults_make_a_valid_stack(tmp_path):
    template = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["template"]["config"]
    values = {key: spec["default"] for key, spec in template.items()}
    assert all(isinstance(v, str) for v in values.values()), "pulumi new stores text"
    cfg = config.parse(config.decode(values))
    assert (cfg.environment, cfg.cluster.servers, cfg.aws_region) == ("dev", 1, "us-east-1")
    stack_file = tmp_path / "Pulumi.fork.yaml"
    stack_file.write_text(yaml.safe_dump({"config": values}))
    result = synthesize("fork", stack_file)
    assert len(result.of_type("aws:ec2/instance:Instance")) == 1


def test_decode_keeps_plain_text_and_other_namespaces():
    decoded = config.decode(
        {
            "platform:environment": "dev",
            "platform:cluster": json.dumps({"servers": 3}),
            "aws:region": "us-east-1",
            "kubernetes:context": "x",
            "kubernetes:labels": '{"a": 1}',
        }
    )
    assert decoded == {
        "platform:environment": "dev",
        "platform:cluster": {"servers": 3},
        "aws:region": "us-east-1",
        "kubernetes:context": "x",
        "kubernetes:labels": '{"a": 1}',
    }
