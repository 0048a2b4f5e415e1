"""The policy side: model loading, precision, KV-cached sampling through the env, and learner-side scoring."""
