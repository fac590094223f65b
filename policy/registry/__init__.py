"""The app registry's rules, shared by the program and the guardrails: `config` (the stack's
`platform:registry` settings), `lifecycle` (the ECR lifecycle policy and its evaluator) and `tags`
(the tagging convention). The `Registry` resource is `components/registry`."""
