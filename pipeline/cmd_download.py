"""`lsd download`: published data and models, fetched once, verified and unpacked."""

from __future__ import annotations

import os
from pathlib import Path

import click

from lsd import landslide4sense as l4s
from lsd.errors import ServiceUnavailable
from lsd.pipeline.options import PATH, LsdGroup, progress_option
from lsd.pipeline.paper.facts import DATA_ARCHIVE, MODELS_ARCHIVE, ZENODO_DOI, ZENODO_RECORD

# A mirror of the Zenodo records API (or a test server); the default is zenodo.org itself.
URL_ENV = "LSD_ZENODO_URL"


@click.group("download", cls=LsdGroup)
def download_group() -> None:
    """Fetch published datasets and models (the paper's and Landslide4Sense's Zenodo records).

    Example:

    \b
        lsd download paper --data --to paper
    """


GO_ON_LINE = (
    "what arrived is kept in the .downloads folder of --to and nothing half-unpacked was left; "
    "rerun the same command to resume the download"
)


@download_group.command("paper", interrupt=GO_ON_LINE)
@click.option("--data", is_flag=True, help=f"The dataset ({DATA_ARCHIVE}).")
@click.option("--models", is_flag=True, help=f"The 360 trained models ({MODELS_ARCHIVE}).")
@click.option("--to", "to", required=True, type=PATH, help="Folder to unpack into.")
@click.option(
    "--from-archive", "from_archive", multiple=True, type=PATH,
    help=f"An archive downloaded by hand ({DATA_ARCHIVE} or {MODELS_ARCHIVE}); repeatable.",
)  # fmt: skip
@progress_option
def paper(data: bool, models: bool, to: Path, from_archive: tuple[Path, ...], progress: bool):
    """Download the paper's dataset and/or models (both when neither is named) into TO.

    Zenodo record 13471162 (doi:10.5281/zenodo.13471162): the published md5 of each archive is
    checked, the archive unpacked into TO/global_dataset or TO/trained_models, and a rerun
    with everything in place does nothing. Without network, `lsd demo` shows the chain on
    generated events.

    Example:

    \b
        lsd download paper --data --to paper
    """
    from lsd.pipeline.zenodo import ZENODO_URL, download_paper

    base = os.environ.get(URL_ENV) or ZENODO_URL
    try:
        folders = download_paper(
            to, data=data, models=models, archives=from_archive, base_url=base,
            progress=progress, echo=lambda m: click.echo(m, err=True),
        )  # fmt: skip
    except ServiceUnavailable as exc:
        names = " and ".join(n for n, on in ((DATA_ARCHIVE, data), (MODELS_ARCHIVE, models))
                             if on or not (data or models))  # fmt: skip
        raise ServiceUnavailable(
            f"{exc}; without network, download {names} from https://zenodo.org/records/"
            f"{ZENODO_RECORD} (doi:{ZENODO_DOI}) by hand and run: lsd download paper "
            f"--from-archive PATH --to {to}; meanwhile `lsd demo` runs the whole chain "
            "offline on generated events"
        ) from None
    for folder in folders:
        click.echo(str(folder))


@download_group.command("landslide4sense", interrupt=GO_ON_LINE)
@click.option("--to", "to", required=True, type=PATH, help="Folder to unpack into.")
@click.option(
    "--from-archive", "from_archive", multiple=True, type=PATH,
    help="An archive downloaded by hand (TrainData.zip, ValidData.zip or TestData.zip); "
    "repeatable.",
)  # fmt: skip
@progress_option
def landslide4sense(to: Path, from_archive: tuple[Path, ...], progress: bool) -> None:
    """Download the Landslide4Sense benchmark into TO/TrainData, TO/ValidData and TO/TestData.

    Zenodo record 10463239 (doi:10.5281/zenodo.10463239): each split's archive is checked
    against its published md5 and unpacked; a rerun with everything in place does nothing.
    Then: lsd import landslide4sense TO DEST.

    Example:

    \b
        lsd download landslide4sense --to l4s
    """
    from lsd.pipeline.zenodo import ZENODO_URL, download_landslide4sense

    base = os.environ.get(URL_ENV) or ZENODO_URL
    try:
        folders = download_landslide4sense(
            to, archives=from_archive, base_url=base, progress=progress,
            echo=lambda m: click.echo(m, err=True),
        )  # fmt: skip
    except ServiceUnavailable as exc:
        names = ", ".join(l4s.ARCHIVES.values())
        raise ServiceUnavailable(
            f"{exc}; without network, download {names} from https://zenodo.org/records/"
            f"{l4s.ZENODO_RECORD} (doi:{l4s.ZENODO_DOI}) by hand and run: lsd download "
            f"landslide4sense --from-archive PATH --to {to}"
        ) from None
    for folder in folders:
        click.echo(str(folder))
