"""Earth Engine side: builds ee graphs for the paper's layer stack and runs the exports.

Imports ee, never torch. Writes event folders through `pipeline.contract`.
"""
