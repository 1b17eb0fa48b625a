"""Local side: datasets, models, losses, training loop, grid, ensemble, metrics.

Imports torch, never ee. Reads event folders through `pipeline.contract`.
"""
