"""Agents that train causal language models against lm-envs environments."""
