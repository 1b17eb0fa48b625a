"""`lsd import`: bring labelled datasets from elsewhere into lsd event folders.

Each dataset is a data source (pipeline/sources/); this module only parses options, runs the
source through the shared driver and reports.
"""

from __future__ import annotations

from pathlib import Path

import click

from lsd.errors import OutputExists
from lsd.files import read_json
from lsd.pipeline.options import PATH, CommaList, LsdGroup, device_option, progress_option
from lsd.versions import TORCH_STACK

GO_ON_LINE = "rerun the same command to go on: finished event folders are kept and skipped"


@click.group("import", cls=LsdGroup)
def import_group() -> None:
    """Convert labelled datasets (the paper's, Landslide4Sense, image/mask tiles) into event
    folders.

    Example:

    \b
        lsd import paper paper/global_dataset paper/events
    """


@import_group.command("landslide4sense", interrupt=GO_ON_LINE)
@click.argument("src", type=PATH)
@click.argument("dest", type=PATH)
@progress_option
def landslide4sense(src: Path, dest: Path, progress: bool) -> None:
    """Import Landslide4Sense patches (image_N.h5 + mask_N.h5) from SRC into DEST.

    SRC holds the benchmark's split folders (TrainData/, ValidData/, TestData/, as `lsd download
    landslide4sense` unpacks them, or images/<split>/ + annotations/<split>/ as on the Hugging
    Face mirror): every split found becomes DEST/l4s_<role>_image_N/ with its role (train, val,
    test). SRC may also be one folder with img/ and mask/: DEST/l4s_image_N/, no role.
    Each patch has 14 layers B1..B12 (no B8A), slope, elevation; the patches are not
    georeferenced, so rasters get no CRS and a nominal 10 m pixel grid.

    Example:

    \b
        lsd import landslide4sense landslide4sense-21 l4s-events
    """
    from lsd.pipeline.sources import import_landslide4sense

    folders = import_landslide4sense(src, dest, progress=progress)
    roles = _role_counts(folders)
    tail = f" ({roles})" if roles and not roles.endswith(" none") else ""
    click.echo(f"{len(folders)} event folder(s) in {dest}{tail}")


@import_group.command("tiles", interrupt=GO_ON_LINE)
@click.argument("src", type=PATH)
@click.argument("dest", type=PATH)
@click.option(
    "--mapping",
    required=True,
    help="Mask value to lsd label code, e.g. 0:255,1:0,2:1 (0 not landslide, 1 landslide, "
    "255 ignored). Every value present in a mask must be named.",
)
@click.option("--images-dir", default="images", show_default=True, help="Image folder in SRC.")
@click.option("--masks-dir", default="masks", show_default=True, help="Mask folder in SRC.")
@click.option(
    "--pairs",
    type=PATH,
    default=None,
    help="File of 'image mask' lines (e.g. map.txt; looked up in SRC first) instead of "
    "pairing by file name.",
)
@click.option(
    "--layers",
    type=CommaList("NAMES"),
    default=None,
    help="Layer names for the image bands, e.g. R,G,B,NIR (default: GeoTIFF band "
    "descriptions, else R,G,B for RGB PNGs, else band1..bandN).",
)
@click.option("--prefix", default="", help="Text put before each event id (the image stem).")
@progress_option
def tiles(
    src: Path,
    dest: Path,
    mapping: str,
    images_dir: str,
    masks_dir: str,
    pairs: Path | None,
    layers: tuple[str, ...] | None,
    prefix: str,
    progress: bool,
) -> None:
    """Import image/mask pairs (PNG or GeoTIFF) from SRC into DEST, one event per image.

    Example:

    \b
        lsd import tiles chips events --pairs map.txt --mapping 0:255,1:0,2:1 --layers R,G,B,NIR
    """
    from lsd.pipeline.sources import import_tiles
    from lsd.pipeline.sources.tiles import parse_mapping

    folders = import_tiles(
        src,
        dest,
        parse_mapping(mapping),
        images_dir=images_dir,
        masks_dir=masks_dir,
        pairs=pairs,
        layers=list(layers) if layers is not None else None,
        prefix=prefix,
        progress=progress,
    )
    click.echo(f"{len(folders)} event folder(s) in {dest}")


@import_group.command("paper")
@click.argument("src", type=PATH)
@click.argument("dest", type=PATH)
@click.option(
    "--inventories", type=PATH,
    help="Also write each georeferenced label as landslide polygons (GeoPackage) with an "
    "events.csv for lsd fetch into this new folder.",
)  # fmt: skip
@progress_option
def paper(src: Path, dest: Path, inventories: Path | None, progress: bool) -> None:
    """Import the paper's dataset (global_dataset.zip, unpacked, under SRC) into DEST.

    Each input/label pair becomes DEST/<event id>/ with the 15 layers of the paper's Table 2;
    test/ gives the test event, train_val/ the training and validation events (the paper's
    validation draw). Georeferencing is kept when the tifs carry it.

    Example:

    \b
        lsd import paper paper/global_dataset paper/events --inventories paper/labels
    """
    from lsd.pipeline.sources import import_paper

    if inventories is not None and inventories.exists():
        raise OutputExists(f"{inventories}: already exists; give a new folder",
                           field="inventories")  # fmt: skip
    summary = import_paper(src, dest, progress=progress)
    roles = _role_counts(summary.folders)
    click.echo(f"{len(summary.folders)} event folder(s) in {dest} ({roles})")
    if inventories is not None:
        from lsd.pipeline.paper.inventories import write_inventories

        csv_path = write_inventories(summary.folders, inventories,
                                     echo=lambda m: click.echo(m, err=True))  # fmt: skip
        click.echo(f"inventories and events.csv for lsd fetch: {csv_path}")


def _role_counts(folders: list[Path]) -> str:
    """'3799 train, 245 val, 800 test' from the event records (only event.json is read)."""
    from lsd.events import EVENT_FILE

    counts: dict[str, int] = {}
    for folder in folders:
        record = read_json(folder / EVENT_FILE)
        role = (record.get("role") if isinstance(record, dict) else None) or "none"
        counts[role] = counts.get(role, 0) + 1
    order = ("train", "val", "test", "none")
    rank = {r: i for i, r in enumerate(order)}
    return ", ".join(f"{counts[r]} {r}" for r in sorted(counts, key=lambda r: rank.get(r, 9)))


@import_group.command("paper-models", stacks=(TORCH_STACK,))
@click.argument("models", type=PATH)
@click.argument("runs", type=PATH)
@click.option(
    "--data", "data", required=True, type=PATH,
    help="The paper's events, as `lsd import paper` wrote them (roles and statistics).",
)  # fmt: skip
@device_option
def paper_models(models: Path, runs: Path, data: Path, device: str) -> None:
    """Import the paper's trained models (trained_models.zip, unpacked, under MODELS) as RUNS.

    Each setting's multirun becomes RUNS/<setting> (s1, s2, s1s2, all) with one bundle per
    checkpoint and a leaderboard from val/f1_best, ready for lsd ensemble, evaluate, predict.

    Example:

    \b
        lsd import paper-models paper/trained_models paper/paper-runs --data paper/events
    """
    from lsd.pipeline.paper.models import import_paper_models

    import_paper_models(models, runs, data, device=device, echo=lambda m: click.echo(m, err=True))
