"""Policy rules, checker CLI, Pulumi pack and upstream conformance."""
