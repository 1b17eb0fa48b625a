"""STAC side: the event stacks of lsd built from open STAC catalogs instead of Earth Engine.

Imports the ground floor (lsd) and its libraries (pystac-client and planetary-computer for
search and signing, rasterio for windowed reads through GDAL warped views, shapely, numpy,
scipy, scikit-learn, pooch), never ee, never torch, never lsd.gee: the `[stac]` extra is all a
user without an Earth Engine account needs. docs/layers.md ("The STAC source") compares each
layer with its Earth Engine definition.
"""
