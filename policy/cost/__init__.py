"""The price model the budget guardrail judges by: the instance catalogue the config accepts
(`catalogue`, from `prices.yaml`) and the monthly estimate of a set of AWS resources (`estimate`).
`cost/` is its command line."""
