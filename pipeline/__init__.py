"""Glue between the Earth Engine side (gee/) and the training side (training/), plus the CLI.

This package must stay import-light: training/ and gee/ import `pipeline.contract` and
`pipeline.errors`, so nothing here may import torch or ee at module level.
"""

__version__ = "0.1.0"
