"""`python -m cost --stack dev`: the monthly estimate of a stack, next to the same nodes on EKS,
and its budget (`platform:monthlyBudgetUsd`); the exit status is 1 above the budget."""

from __future__ import annotations

import argparse
import sys

from components.config import ConfigError
from cost import levers
from policy.cost.estimate import UnknownPrice, eks_comparison, estimate
from synth.core import stack_name, synthesize


def stack_estimates(stack: str):
    """The stack's estimate and the EKS comparison (None for a stack without AWS resources)."""
    result = synthesize(stack)
    cfg = result.config
    if cfg.aws_region is None or cfg.cluster is None:
        return result, None, None
    from synth.core import cost_resources

    est = estimate(cost_resources(result), cfg.aws_region)
    return result, est, eks_comparison(est, azs=max(cfg.network.availability_zones, 2))


def markdown(stacks: list[str]) -> str:
    rows = [
        "| stack | this blueprint (K3s on EC2) | same nodes on EKS (+ control plane, NAT per AZ) |",
        "|---|---|---|",
    ]
    for stack in stacks:
        _, est, eks = stack_estimates(stack)
        if est is not None:
            rows.append(f"| `{stack}` | ${est.total:,.2f} | ${eks.total:,.2f} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cost", description=__doc__)
    parser.add_argument("--stack", default="dev", type=stack_name)
    parser.add_argument(
        "--markdown",
        nargs="*",
        type=stack_name,
        metavar="STACK",
        help="print the docs table comparing these stacks with EKS",
    )
    parser.add_argument(
        "--levers",
        nargs="*",
        type=stack_name,
        metavar="STACK",
        help="print the docs tables of what each lever of cost/levers.yaml is worth",
    )
    args = parser.parse_args(argv)
    try:
        if args.markdown is not None:
            print(markdown(args.markdown or ["dev", "prod"]), end="")
            return 0
        if args.levers is not None:
            print(levers.markdown(args.levers or ["dev", "prod"]), end="")
            return 0
        result, est, eks = stack_estimates(args.stack)
    except ConfigError as exc:
        print("\n".join(f"cost: {line}" for line in exc.lines()), file=sys.stderr)
        return 2
    except (UnknownPrice, FileNotFoundError) as exc:
        print(f"cost: {exc}", file=sys.stderr)
        return 2
    if est is None:
        print(f"{args.stack}: no AWS resources (existing cluster); nothing billed by this stack")
        return 0
    print(est.table())
    print(f"\nThe same node sizes on EKS with one NAT gateway per AZ: ${eks.total:,.2f}/month")
    budget = result.config.monthly_budget_usd
    if budget is None:
        print("No budget set (platform:monthlyBudgetUsd).")
        return 0
    verdict = "within" if est.total <= budget else "OVER"
    print(f"Budget (platform:monthlyBudgetUsd): ${budget:,.2f}/month: {verdict}")
    return 0 if est.total <= budget else 1


if __name__ == "__main__":
    sys.exit(main())
