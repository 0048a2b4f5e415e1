"""The seed papers' claims, reproduced in miniature: one driver per claim and one command for all of them.

``experiments/claim_<name>.py`` exposes ``run(seeds, out_dir, quick=False) -> dict`` and a command line
(``--seeds 0 1 2 --out experiments/results --quick``); it writes ``<out>/<name>.json`` (arms with per-seed values,
mean and 95% t-interval, verdict, summary; :func:`experiments.common.check_result` is the schema) and a PNG.
``python -m experiments.run_all`` runs them all and rebuilds the README's results table. Not part of the wheel.
"""
