"""`lsd ensemble`, `lsd evaluate`, `lsd predict` (being built)."""

from pathlib import Path

import click


def _k_option(text: str) -> int | None:
    """--k accepts a whole number or 'auto'; None means 'choose by validation F1'."""
    from lsd.errors import UserError

    if text.strip().lower() == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--k '{text}' must be a whole number or 'auto'") from None


@click.command()
@click.argument("runs", type=click.Path(path_type=Path))
@click.option(
    "--k",
    "k_text",
    default="auto",
    show_default=True,
    help="Ensemble size, or 'auto' = the size with the best validation F1.",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Ensemble folder.")
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=float,
    help="Threshold on the mean probability, stored in the manifest.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Event folders for --k auto [the data folder recorded in RUNS/grid.json].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace an existing ensemble folder.")
def ensemble(
    runs: Path,
    k_text: str,
    out: Path,
    threshold: float,
    data: Path | None,
    device: str,
    overwrite: bool,
) -> None:
    """Bundle the K best runs of RUNS (by validation F1) into a self-contained ENSEMBLE folder."""
    from lsd.training.device import resolve_device
    from lsd.training.ensemble import make_ensemble

    dev = str(resolve_device(device))
    manifest = make_ensemble(
        runs,
        out,
        k=_k_option(k_text),
        threshold=threshold,
        data_dir=data,
        overwrite=overwrite,
        device=dev,
    )
    sel = manifest["k_selection"]
    if sel.get("mode") == "auto":
        click.echo(f"validation F1 by ensemble size ({len(sel['val_events'])} val events):")
        for point in sel["curve"]:
            f1 = point["val_f1"]
            mark = "  <- chosen" if point["k"] == manifest["k"] else ""
            click.echo(
                f"  K={point['k']:>3}  F1 {f1 if f1 is not None else float('nan'):.4f}{mark}"
            )
    names = ", ".join(m["name"] for m in manifest["members"])
    click.echo(f"wrote {out}: K={manifest['k']} members ({names})")


@click.command()
@click.argument("runs", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Event folders.")
@click.option(
    "--events",
    "events_text",
    help="Comma-separated test event ids [split.json test, else event.json roles].",
)
@click.option("--out", type=click.Path(path_type=Path), help="Output folder [RUNS/evaluation].")
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=float,
    help="Threshold on the (mean) probability.",
)
@click.option(
    "--ks",
    "ks_text",
    default="10,20,40",
    show_default=True,
    help="Ensemble sizes to mark in the figures and the report.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
def evaluate(
    runs: Path,
    data: Path,
    events_text: str | None,
    out: Path | None,
    threshold: float,
    ks_text: str,
    device: str,
    overwrite: bool,
) -> None:
    """Score every model of RUNS and every top-K ensemble on the test events of DATA."""
    from lsd.pipeline.evaluate import evaluate_runs, parse_ks
    from lsd.training.device import resolve_device

    ks = parse_ks(ks_text)
    ids = [p.strip() for p in events_text.split(",") if p.strip()] if events_text else None
    dev = str(resolve_device(device))
    ev = evaluate_runs(
        runs, data, out, events=ids, threshold=threshold, ks=ks, overwrite=overwrite, device=dev
    )
    best, n = ev.test.single[0], len(ev.entries)
    click.echo(f"{len(ev.test_events)} test events, {n} models")
    click.echo(f"  best single ({ev.entries[0].run_id}): F1 {best.f1:.4f}")
    for k in sorted({*(k for k in ks if k <= n), n}):
        click.echo(f"  ensemble K={k}: F1 {ev.test.ensemble[k - 1].f1:.4f}")
    click.echo(f"wrote {ev.out}")


@click.command()
@click.option("--stack", type=click.Path(path_type=Path), help="Existing stack.tif to map.")
@click.option("--aoi", type=click.Path(path_type=Path), help="AOI polygon file (fetches a stack).")
@click.option("--date", "date_text", help="Event date YYYY-MM-DD (with --aoi).")
@click.option("--project", help="Earth Engine cloud project (with --aoi).")
@click.option(
    "--model", required=True, type=click.Path(path_type=Path), help="Ensemble (or bundle) folder."
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--threshold", type=float, help="Probability threshold [ensemble's own, 0.5].")
@click.option("--tile", default=512, show_default=True, help="Tile side in pixels.")
@click.option("--overlap", default=64, show_default=True, help="Tile overlap in pixels.")
@click.option(
    "--batch-size",
    type=int,
    help="Tiles per forward pass [default: 8 on a GPU, 1 on a CPU, where batching is no faster].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option(
    "--min-area-m2",
    default=500.0,
    show_default=True,
    help="Minimum mapping unit: smaller landslide polygons are dropped.",
)
@click.option("--mask-water", is_flag=True, help="Drop detections on water (water/landCover).")
@click.option("--mask-snow", is_flag=True, help="Drop detections on snow (snow/landCover).")
@click.option("--min-slope", type=float, help="Drop detections flatter than DEG (slope layer).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
def predict(
    stack: Path | None,
    aoi: Path | None,
    date_text: str | None,
    project: str | None,
    model: Path,
    out: Path,
    threshold: float | None,
    tile: int,
    overlap: int,
    batch_size: int | None,
    device: str,
    min_area_m2: float,
    mask_water: bool,
    mask_snow: bool,
    min_slope: float | None,
    overwrite: bool,
) -> None:
    """Map landslides on a stack (or on an AOI and date, fetched first) with an ensemble."""
    from lsd.errors import UserError
    from lsd.pipeline.masks import MaskOptions
    from lsd.pipeline.predict import (
        PredictOptions,
        aoi_spec,
        check_output_folder,
        fetch_for_prediction,
        load_model,
        parse_date,
        predict_stack,
    )
    from lsd.training.device import resolve_device

    if (stack is None) == (aoi is None):
        raise UserError("give either --stack FILE or --aoi FILE with --date YYYY-MM-DD")
    if aoi is not None and not date_text:
        raise UserError("--aoi needs --date YYYY-MM-DD (the event date)")
    if stack is not None and (date_text or project):
        raise UserError("--date and --project go with --aoi, not with --stack")
    opts = PredictOptions(
        threshold=threshold,
        tile=tile,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        min_area_m2=min_area_m2,
        masks=MaskOptions(water=mask_water, snow=mask_snow, min_slope=min_slope),
        overwrite=overwrite,
    )
    check_output_folder(out, overwrite)
    inputs: dict = {}
    spec = None
    if aoi is not None:
        spec = aoi_spec(aoi, parse_date(date_text))
    resolve_device(device)  # an unusable --device fails before anything is loaded or fetched
    loaded = load_model(model)
    if spec is not None:
        work = out.parent / f"{out.name}.inputs"
        stack = fetch_for_prediction(spec, loaded.layers, work, project)
        inputs = {"aoi": str(aoi), "date": spec.date.isoformat(), "fetched_to": str(stack)}
    elif not stack.exists():
        raise UserError(f"{stack}: stack file not found")
    record = predict_stack(stack, loaded, out, opts, inputs=inputs)
    click.echo(
        f"{out}: {record['polygons']['kept']} landslide polygon(s), "
        f"{record['landslide_pixels']} pixel(s) at threshold {record['threshold']} "
        f"in {record['timings_s']['total_s']:.1f} s on {record['device']}"
    )
