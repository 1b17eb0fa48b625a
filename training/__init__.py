"""Local side (`lsd.training`): datasets, models, losses, the loop, the grid and its executors,
ensembles, inference and metrics.

Imports torch and the ground floor (`lsd`), never ee or `lsd.gee`. Reads event folders and
writes RUNS folders and bundles only through the ground floor's formats.
"""
