"""The top floor: the `lsd` command line, data sources other than Earth Engine (importers),
and the fetch/train/evaluate/predict orchestration that joins `lsd.gee` and `lsd.training`.

Nothing here may import torch or ee at module level: `lsd --help` and `lsd fetch` must not pay
for torch, and `lsd train` must not need ee.
"""
