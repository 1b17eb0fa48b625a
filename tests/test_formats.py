"""The gate for files users and archives bring (lsd.formats): a `.tif` or `.png` that is really
GDAL VRT XML, GeoTIFFs with hostile files beside them, and HDF5 data stored in other files must
never bring another file's bytes into lsd's outputs.

Each hostile file reads a private file made here (its bytes spell a password); the cases go
through the real commands that met such files: `lsd download paper --from-archive` of a real zip
and `lsd import paper`, `lsd import tiles`, `lsd import landslide4sense`, `lsd inspect`,
`lsd predict` and `lsd add-layer`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from lsd.errors import InvalidFile
from lsd.formats import open_raster, read_h5_dataset, real_driver
from lsd.pipeline.cli import main
from lsd.rasters import read_layer_names, read_stack
from tests.paper_fixtures import write_paper_dataset, zip_folder

SECRET = b"root:x:0:0:TOP-SECRET-hunter2:/root:/bin/bash\n"


def raw_vrt(secret: Path, bands: int, size: int) -> str:
    """VRT XML whose bands are the raw bytes of `secret`."""
    band = (
        '<VRTRasterBand dataType="Byte" band="{i}" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativetoVRT="0">{secret}</SourceFilename><ImageOffset>0'
        f"</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{size}</LineOffset>"
        "</VRTRasterBand>"
    )
    body = "".join(band.format(i=i + 1) for i in range(bands))
    return f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}">{body}</VRTDataset>'


def write_tif(path: Path, data: np.ndarray, *, georef: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = data if data.ndim == 3 else data[None]
    extra = ({"crs": "EPSG:32633", "transform": from_origin(500000, 7000000, 10, 10)}
             if georef else {})  # fmt: skip
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                       count=data.shape[0], dtype=data.dtype, **extra) as dst:  # fmt: skip
        dst.write(data)
    return path


def leaked(folder: Path) -> bool:
    """Whether any file below `folder` (but the private one) holds the private bytes, raw or
    as pixel values."""
    for path in folder.rglob("*"):
        if not path.is_file() or path.parent.name == "private":
            continue
        if SECRET[:20] in path.read_bytes():
            return True
        if path.suffix == ".tif" and real_driver(path) == "GTiff":  # lsd's outputs
            with rasterio.open(path) as src:
                data = np.nan_to_num(src.read()).clip(0, 255).astype(np.uint8)
            if any(SECRET[:20] in a.tobytes() for a in (data, np.moveaxis(data, 0, 2))):
                return True
    return False


def one_error(result) -> str:
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert "Traceback" not in result.output
    return errors[0]


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "private" / "id_rsa"
    path.parent.mkdir()
    path.write_bytes(SECRET * 200)
    return path


# --------------------------------------------------------------------------- the gate itself


def test_a_tif_that_is_a_vrt_is_refused_naming_its_driver(tmp_path: Path, secret: Path) -> None:
    evil = tmp_path / "stack.tif"
    evil.write_text(raw_vrt(secret, 2, 32))
    with rasterio.open(evil) as src:  # what GDAL alone does with it: the private bytes
        assert src.driver == "VRT" and SECRET[:16] in src.read(1).tobytes()
    assert real_driver(evil) == "VRT"
    for read in (open_raster, read_layer_names, read_stack):
        with pytest.raises(InvalidFile) as err:
            read(evil)
        assert str(err.value).startswith(f"{evil}: is really a GDAL VRT file")
        assert "(GDAL driver VRT), not a GeoTIFF" in str(err.value)


def test_other_formats_under_a_tif_name_and_unknown_suffixes(tmp_path: Path) -> None:
    from PIL import Image

    png_as_tif = tmp_path / "a.tif"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png_as_tif, format="PNG")
    with pytest.raises(InvalidFile, match=r"a.tif: is really a PNG \(GDAL driver PNG\), not a"):
        open_raster(png_as_tif)
    good = write_tif(tmp_path / "good.vrt.x", np.ones((4, 4), np.uint8))
    with pytest.raises(InvalidFile, match=r"lsd reads only .tif, .tiff rasters here, not '.x'"):
        open_raster(good)
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    with pytest.raises(InvalidFile, match=r"empty.tif: not a readable GeoTIFF"):
        open_raster(empty)


def test_files_beside_a_geotiff_are_never_read(tmp_path: Path, secret: Path) -> None:
    """GDAL opens foo.tif.ovr and foo.tif.msk with any driver (a VRT too) and applies
    foo.tif.aux.xml; the gate makes GDAL see no sibling files at all."""
    good = write_tif(tmp_path / "good.tif", np.ones((32, 32), np.uint8))
    (tmp_path / "good.tif.ovr").write_text(raw_vrt(secret, 1, 16))
    (tmp_path / "good.tif.msk").write_text(raw_vrt(secret, 1, 32))
    (tmp_path / "good.tif.aux.xml").write_text(
        '<PAMDataset><PAMRasterBand band="1"><Description>injected</Description>'
        "<NoDataValue>1</NoDataValue></PAMRasterBand></PAMDataset>"
    )
    with rasterio.open(good) as src:  # GDAL alone: the overview is the private file
        assert SECRET[:8] in src.read(1, out_shape=(16, 16)).tobytes() and src.nodata == 1
    with open_raster(good) as src:
        assert src.files == [str(good)] and src.overviews(1) == [] and src.nodata is None
        assert src.descriptions == (None,)
        assert (src.read(1, out_shape=(16, 16)) == 1).all() and (src.read_masks(1) == 255).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["good.tif", "good.tif.ovr", "good.tif.msk", "good.tif.aux.xml", "private"]
    )  # and nothing was written beside it


def test_georeferencing_only_in_a_sidecar_is_refused_not_dropped(tmp_path: Path) -> None:
    bare = write_tif(tmp_path / "bare.tif", np.ones((4, 4), np.uint8), georef=False)
    with open_raster(bare) as src:
        assert src.crs is None  # without a sidecar: simply not georeferenced
    (tmp_path / "bare.tfw").write_text("10\n0\n0\n-10\n500000\n7000000\n")
    with pytest.raises(InvalidFile, match=r"bare.tif: its georeferencing is only in bare.tfw"):
        open_raster(bare)
    geo = write_tif(tmp_path / "geo.tif", np.ones((4, 4), np.uint8))
    (tmp_path / "geo.tfw").write_text("20\n0\n0\n-20\n0\n0\n")
    with open_raster(geo) as src:  # its own georeferencing wins; the world file is not read
        assert src.transform.a == 10


def test_hdf5_data_stored_elsewhere_is_refused(tmp_path: Path, secret: Path) -> None:
    path = tmp_path / "image_1.h5"
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["img"] = np.ones((4, 4, 14))
    with h5py.File(path, "w") as f:
        f.create_dataset("img", (8, 8, 14), "uint8", external=[(str(secret), 0, 896)])
        f["linked"] = h5py.ExternalLink(str(other), "img")
        layout = h5py.VirtualLayout((4, 4, 14), "f8")
        layout[:] = h5py.VirtualSource(str(other), "img", shape=(4, 4, 14))
        f.create_virtual_dataset("virtual", layout)
        f["fine"] = np.zeros((2, 2))
    with h5py.File(path, "r") as f:  # what h5py alone does with it
        assert SECRET[:16] in f["img"][()].tobytes()
    with pytest.raises(InvalidFile, match=rf"dataset 'img' is stored in another file \({secret}"):
        read_h5_dataset(path, "img")
    with pytest.raises(InvalidFile, match=rf"'linked' is a link to {other}, not data in this"):
        read_h5_dataset(path, "linked")
    with pytest.raises(InvalidFile, match=rf"'virtual' is a virtual dataset reading {other}"):
        read_h5_dataset(path, "virtual")
    assert read_h5_dataset(path, "fine").shape == (2, 2)


# --------------------------------------------------------------------------- through the commands


def test_vrt_in_a_real_zip_through_download_and_import_paper(tmp_path: Path, secret: Path):
    ds = write_paper_dataset(tmp_path / "made", size=(64, 64), train_val=[1, 2, 3, 4, 8])
    evil = ds / "test" / "input" / "5_input.tif"
    evil.write_text(raw_vrt(secret, 15, 64))
    archive = zip_folder(ds, tmp_path / "global_dataset.zip")
    runner = CliRunner()
    got = runner.invoke(main, ["download", "paper", "--from-archive", str(archive), "--to",
                               str(tmp_path / "dl"), "--no-progress"])  # fmt: skip
    assert got.exit_code == 0, got.output
    unpacked = tmp_path / "dl" / "global_dataset"
    out = tmp_path / "out"
    got = runner.invoke(main, ["import", "paper", str(unpacked), str(out), "--no-progress"])
    line = one_error(got)
    assert f"{unpacked / 'test' / 'input' / '5_input.tif'}: is really a GDAL VRT file" in line
    assert not out.exists() and not leaked(tmp_path)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_vrt_tile_through_import_tiles(tmp_path: Path, secret: Path, suffix: str) -> None:
    src, rng = tmp_path / "src", np.random.default_rng(0)
    for name in ("a", "b"):
        write_tif(src / "masks" / f"{name}.tif", (rng.random((32, 32)) > 0.5).astype(np.uint8))
        write_tif(src / "images" / f"{name}.tif", rng.random((3, 32, 32)).astype(np.float32))
    (src / "images" / "a.tif").unlink()
    (src / "images" / f"a{suffix}").write_text(raw_vrt(secret, 3, 32))
    out = tmp_path / "out"
    got = CliRunner().invoke(main, ["import", "tiles", str(src), str(out), "--mapping",
                                    "0:0,1:1", "--no-progress"])  # fmt: skip
    line = one_error(got)
    assert f"images/a{suffix}: is really a GDAL VRT file (GDAL driver VRT)" in line
    assert not (out / "a").exists() and not leaked(tmp_path)


def test_external_h5_through_import_landslide4sense(tmp_path: Path, secret: Path) -> None:
    src = tmp_path / "src"
    (src / "img").mkdir(parents=True)
    (src / "mask").mkdir()
    with h5py.File(src / "img" / "image_1.h5", "w") as f:
        f.create_dataset("img", (8, 8, 14), "uint8", external=[(str(secret), 0, 896)])
    with h5py.File(src / "mask" / "mask_1.h5", "w") as f:
        f["mask"] = np.zeros((8, 8), np.uint8)
    out = tmp_path / "out"
    got = CliRunner().invoke(main, ["import", "landslide4sense", str(src), str(out),
                                    "--no-progress"])  # fmt: skip
    assert "image_1.h5: dataset 'img' is stored in another file" in one_error(got)
    assert not out.exists()


def test_inspect_and_add_layer_refuse_a_vrt_named_tif(tmp_path: Path, secret: Path) -> None:
    evil = tmp_path / "stack.tif"
    evil.write_text(raw_vrt(secret, 1, 32))
    got = CliRunner().invoke(main, ["inspect", str(evil)])
    assert f"{evil}: is really a GDAL VRT file" in one_error(got) and "TOP-SECRET" not in got.output
    # add-layer reads a .vrt the user names as one, but not a VRT under another name
    from lsd.events import event_record, write_event
    from lsd.rasters import Grid

    grid = Grid(32, 32, rasterio.crs.CRS.from_epsg(32633), from_origin(500000, 7000000, 10, 10))
    data = tmp_path / "data"
    write_event(data / "e1", event_record("e1", layers=("a",), grid=grid, source={"kind": "t"}),
                grid=grid, stack=np.zeros((1, 32, 32), np.float32))  # fmt: skip
    got = CliRunner().invoke(main, ["add-layer", str(data), str(evil), "--name", "x"])
    assert f"{evil}: is really a GDAL VRT file" in one_error(got)
    assert read_layer_names(data / "e1" / "stack.tif") == ("a",)


def test_an_ogr_vrt_under_a_vector_name_is_refused(tmp_path: Path) -> None:
    """AOIs and inventories are read by OGR, which would read an OGR VRT named .geojson and,
    through it, any file it names (here a CSV of private polygons)."""
    private = tmp_path / "private" / "sites.csv"
    private.parent.mkdir()
    private.write_text('wkt,name\n"POLYGON((10 60,10.1 60,10.1 60.1,10 60.1,10 60))",hidden\n')
    evil = tmp_path / "aoi.geojson"
    evil.write_text(
        f"<OGRVRTDataSource><OGRVRTLayer name='x'><SrcDataSource>CSV:{private}</SrcDataSource>"
        "<SrcLayer>sites</SrcLayer><GeometryType>wkbPolygon</GeometryType><LayerSRS>EPSG:4326"
        "</LayerSRS><GeometryField encoding='WKT' field='wkt'/></OGRVRTLayer></OGRVRTDataSource>"
    )
    import geopandas as gpd

    assert gpd.read_file(evil)["name"].tolist() == ["hidden"]  # what OGR alone does with it
    got = CliRunner().invoke(main, ["predict", "--aoi", str(evil), "--date", "2020-01-01",
                                    "--model", str(tmp_path / "ens"), "--out",
                                    str(tmp_path / "map")])  # fmt: skip
    line = one_error(got)
    assert f"{evil}: is really a GDAL VRT file (driver OGR_VRT), not a .geojson file" in line
    assert not (tmp_path / "map").exists()
