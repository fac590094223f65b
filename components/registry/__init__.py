"""The app image registry: ECR repositories and node pull rights (`component`, the `Registry`
resource). Its settings, lifecycle policy and tagging convention are `policy/registry`, which the
guardrails judge images by.
"""
