"""`GeneratedPassword`: a random password made once and kept in the stack's state as a secret.

The platform layer runs on every target, the local one included, so it uses no provider beyond
pulumi-kubernetes: this dynamic resource draws the password from the `secrets` module when it is
created and keeps it (and its bcrypt hash, which Argo CD wants) until the requested length changes.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

import bcrypt
import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ResourceProvider

ALPHABET = string.ascii_letters + string.digits
"""Letters and digits only: the password goes through shells, URLs and YAML unquoted."""
MIN_LENGTH = 16
MAX_LENGTH = 72
"""bcrypt reads at most 72 bytes."""


def new_password(length: int) -> dict[str, str]:
    value = "".join(secrets.choice(ALPHABET) for _ in range(length))
    digest = bcrypt.hashpw(value.encode(), bcrypt.gensalt(rounds=10)).decode()
    return {"result": value, "bcrypt_hash": digest}


class PasswordProvider(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        length = news.get("password_length")
        # The engine carries numbers as doubles: 24 arrives as 24.0.
        if isinstance(length, float) and length.is_integer():
            length = int(length)
        if (
            isinstance(length, bool)
            or not isinstance(length, int)
            or not MIN_LENGTH <= length <= MAX_LENGTH
        ):
            return CheckResult(
                news,
                [
                    CheckFailure(
                        "password_length",
                        f"{length!r} must be a whole number from {MIN_LENGTH} to {MAX_LENGTH}",
                    )
                ],
            )
        return CheckResult({**news, "password_length": length}, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        length = int(props["password_length"])
        return CreateResult(
            f"password-{secrets.token_hex(8)}", {"password_length": length, **new_password(length)}
        )

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("password_length") != news.get("password_length")
        return DiffResult(
            changes=changed,
            replaces=["password_length"] if changed else [],
            delete_before_replace=False,
        )


class GeneratedPassword(pulumi.dynamic.Resource):
    """`result` (the password) and `bcrypt_hash`, both secret outputs."""

    result: pulumi.Output[str]
    bcrypt_hash: pulumi.Output[str]

    def __init__(self, name: str, length: int, opts: pulumi.ResourceOptions | None = None):
        super().__init__(
            PasswordProvider(),
            name,
            {"password_length": length, "result": None, "bcrypt_hash": None},
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(additional_secret_outputs=["result", "bcrypt_hash"])
            ),
        )
