"""Core contracts: problems, tasks, rewards, the token/vector/text environments, tokenizers."""
