"""The RL algorithms, one file each behind the Learner interface, and the supervised stages they start from."""
