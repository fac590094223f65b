"""What the dynamic providers of the program share."""

from __future__ import annotations

from typing import Any


def is_unknown(value: Any) -> bool:
    """True for an input the engine does not know yet (during a preview).

    The dynamic-provider host hands such inputs over as `pulumi.output.Unknown` objects; older
    hosts (and the mock runtime) as the `rpc.UNKNOWN` string.
    """
    from pulumi.output import Unknown
    from pulumi.runtime import rpc

    return isinstance(value, Unknown) or value == rpc.UNKNOWN
