"""lsd: landslide detection from Sentinel-1/2 stacks.

This package is the ground floor: the file contract (event folders, RUNS folders, model bundles
and ensembles), the layer vocabulary, the event specification every data source is asked for,
and the typed errors. It imports nothing else of the project, so `lsd.gee` (Earth Engine, no
torch), `lsd.training` (torch, no ee) and `lsd.pipeline` (the CLI on top) all stand on it.
See docs/architecture.md.
"""

# The one place the version is written: pyproject.toml reads it (dynamic), and the built
# distribution's metadata, which `lsd --version` prints, carries it.
__version__ = "0.1.0"
