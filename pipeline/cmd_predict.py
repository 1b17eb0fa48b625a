"""`lsd predict`: landslide maps from an ensemble, on a stack or on an area and date."""

from __future__ import annotations

from pathlib import Path

import click

from lsd.bundles import DEFAULT_THRESHOLD, open_models
from lsd.errors import ConventionMismatch, InputNotFound, UserError
from lsd.outputs import check_output, check_reusable
from lsd.pipeline.options import (
    LsdCommand,
    device_option,
    overwrite_option,
    precision_option,
    ray_address_option,
)
from lsd.training.options import EXECUTORS, RUNTIMES, ForwardOptions, TileOptions
from lsd.versions import TORCH_STACK

TILES = TileOptions()  # the defaults the options show


def _check_inputs_given(
    stack: Path | None, aoi: Path | None, date_text: str | None, project: str | None
) -> None:

    if (stack is None) == (aoi is None):
        raise UserError("give either --stack FILE or --aoi FILE with --date YYYY-MM-DD")
    if aoi is not None and not date_text:
        raise UserError("--aoi needs --date YYYY-MM-DD (the event date)")
    if stack is not None and (date_text or project):
        raise UserError("--date and --project go with --aoi, not with --stack")


@click.command(cls=LsdCommand, stacks=(TORCH_STACK,))
@click.option("--stack", type=click.Path(path_type=Path), help="Existing stack.tif to map.")
@click.option("--aoi", type=click.Path(path_type=Path), help="AOI polygon file (fetches a stack).")
@click.option("--date", "date_text", help="Event date YYYY-MM-DD (with --aoi).")
@click.option("--project", help="Earth Engine cloud project (with --aoi).")
@click.option(
    "--source", type=click.Choice(["earthengine", "stac"]), default="earthengine",
    show_default=True, help="With --aoi: fetch from Earth Engine or from open STAC catalogs.",
)  # fmt: skip
@click.option(
    "--catalog", help="With --source stac: planetary-computer (default), earth-search or a URL."
)
@click.option(
    "--model", required=True, type=click.Path(path_type=Path), help="Ensemble (or bundle) folder."
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option(
    "--threshold", type=float,
    help=f"Probability threshold [the ensemble's own; a bundle's: {DEFAULT_THRESHOLD}].",
)  # fmt: skip
@click.option("--tile", default=TILES.tile, show_default=True, help="Tile side in pixels.")
@click.option("--overlap", default=TILES.overlap, show_default=True, help="Tile overlap in pixels.")
@click.option(
    "--batch-size",
    type=int,
    help="Tiles per forward pass [default: 8 on a GPU, 1 on a CPU, where batching is no faster].",
)
@device_option
@precision_option
@click.option("--tta", is_flag=True, help="Average the 8 flips/rotations of each tile (8x slower).")
@click.option(
    "--runtime", type=click.Choice(RUNTIMES), default=RUNTIMES[0], show_default=True,
    help="torch, or onnx: ONNX Runtime on the CPU, each member checked against PyTorch to 1e-4.",
)  # fmt: skip
@click.option(
    "--executor", type=click.Choice(EXECUTORS), default=EXECUTORS[0], show_default=True,
    help="inprocess, or ray: blocks of rows predicted on a Ray cluster (pip install 'lsd[ray]').",
)  # fmt: skip
@ray_address_option
@click.option(
    "--block-rows", type=int, help="With ray: image rows per block [about 64 MB of output each]."
)
@click.option(
    "--min-area-m2",
    default=500.0,
    show_default=True,
    help="Minimum mapping unit: smaller landslide polygons are dropped.",
)
@click.option("--mask-water", is_flag=True, help="Drop detections on water (water/landCover).")
@click.option("--mask-snow", is_flag=True, help="Drop detections on snow (snow/landCover).")
@click.option("--min-slope", type=float, help="Drop detections flatter than DEG (slope layer).")
@click.option(
    "--allow-empty-layers",
    is_flag=True,
    help="Map even when a layer the model needs holds no data (every pixel NaN).",
)
@click.option(
    "--ignore-conventions", is_flag=True,
    help="Map a stack whose conventions (flattening sign, flag polarity, dB) differ from the "
    "model's.",
)  # fmt: skip
@overwrite_option
def predict(
    stack: Path | None,
    aoi: Path | None,
    date_text: str | None,
    project: str | None,
    source: str,
    catalog: str | None,
    model: Path,
    out: Path,
    threshold: float | None,
    tile: int,
    overlap: int,
    batch_size: int | None,
    device: str,
    precision: str,
    tta: bool,
    runtime: str,
    executor: str,
    ray_address: str | None,
    block_rows: int | None,
    min_area_m2: float,
    mask_water: bool,
    mask_snow: bool,
    min_slope: float | None,
    allow_empty_layers: bool,
    ignore_conventions: bool,
    overwrite: bool,
) -> None:
    """Map landslides on a stack (or on an AOI and date, fetched first) with an ensemble.

    Example:

    \b
        lsd predict --stack events/05-norway/stack.tif --model ensemble --out norway-map

    \f
    Long because click hands every option over as a parameter; the work is in
    lsd.pipeline.predict."""
    from lsd.pipeline.aoi import aoi_spec, fetch_for_prediction, parse_date
    from lsd.pipeline.masks import MaskOptions
    from lsd.pipeline.predict import EmptyInput, PredictOptions, predict_stack, prediction_device

    _check_inputs_given(stack, aoi, date_text, project)
    opts = PredictOptions(
        threshold=threshold,
        tiles=TileOptions(tile, overlap, batch_size),
        device=device,
        min_area_m2=min_area_m2,
        masks=MaskOptions(water=mask_water, snow=mask_snow, min_slope=min_slope),
        overwrite=overwrite,
        allow_empty_layers=allow_empty_layers,
        ignore_conventions=ignore_conventions,
        forward=ForwardOptions(precision=precision, tta=tta, runtime=runtime),
        executor=executor,
        ray_address=ray_address,
        block_rows=block_rows,
    )
    if (ray_address or block_rows) and executor != "ray":
        raise UserError("--ray-address and --block-rows go with --executor ray")
    check_output(out, "map", overwrite=overwrite, inputs=(stack, model, aoi))
    inputs: dict = {}
    spec = None
    if aoi is not None:
        spec = aoi_spec(aoi, parse_date(date_text))
        work = check_reusable(out.parent / f"{out.name}.inputs", "data")
    models = open_models(model)
    if spec is not None:
        prediction_device(opts)  # an unusable --device fails before the fetch
        matching = _matching(models) if source == "earthengine" else None
        stack = fetch_for_prediction(
            spec, models.layers, work, project, source=source, catalog=catalog, cfg=matching
        )
        inputs = {"aoi": str(aoi), "date": spec.date.isoformat(), "fetched_to": str(stack)}
    elif not stack.exists():
        raise InputNotFound(f"{stack}: stack file not found")
    try:
        record = predict_stack(stack, models, out, opts, inputs=inputs)
    except EmptyInput as exc:
        raise EmptyInput(f"{exc} (use --allow-empty-layers to map it anyway)") from None
    except ConventionMismatch as exc:
        raise ConventionMismatch(
            f"{exc} (lsd fetch --conventions-from {model} fetches one; --ignore-conventions "
            "maps this stack anyway)"
        ) from None
    click.echo(
        f"{out}: {record['polygons']['kept']} landslide polygon(s), "
        f"{record['landslide_pixels']} pixel(s) at threshold {record['threshold']} "
        f"in {record['timings_s']['total_s']:.1f} s on {record['device']}"
    )


def _matching(models):
    """The fetch settings that give the model's conventions (lsd's defaults where it has none)."""
    from lsd.gee.config import FetchConfig, config_for_conventions
    from lsd.pipeline.conventions import model_conventions
    from lsd.progress import warn

    record = model_conventions(models)
    if record is None:
        return FetchConfig()
    values, notes = config_for_conventions(record, f"the model {models.path}")
    for note in notes:
        warn(note)
    return FetchConfig(**values)
