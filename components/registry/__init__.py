"""The app image registry: ECR repositories, tag-class retention and node pull rights.

`config` (stack settings), `lifecycle` (policy and ECR evaluator), `tags` (the tagging
convention, importable without Pulumi) and `component` (the `Registry` resource).
"""
