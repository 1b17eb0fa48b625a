"""Earth Engine side (`lsd.gee`): builds ee graphs for the layer stack and fetches event folders.

Imports ee and the ground floor (`lsd`), never torch or `lsd.training`. `lsd.gee.source` is the
Earth Engine implementation of the data-source protocol (`lsd.sources`).
"""
