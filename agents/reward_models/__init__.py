"""Reward models: Bradley-Terry preference models, outcome (ORM) and process (PRM) verifiers, and their training."""
