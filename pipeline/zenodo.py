"""Downloading published archives from Zenodo: listed, fetched, verified, unpacked, once.

A `ZenodoRecord` names a record and the archives lsd knows in it: the paper's (record 13471162:
global_dataset.zip, trained_models.zip) and Landslide4Sense's (record 10463239: TrainData.zip,
ValidData.zip, TestData.zip). Every record goes through the same steps.

The record's file list comes from the Zenodo records API (name, download link, md5), and each
archive is fetched by pooch (`pooch.retrieve`: hash check on the downloaded bytes, a file that
fails the check is deleted before anyone sees it) through a downloader that shows progress and
resumes an interrupted download where it stopped (HTTP Range), since the archives are large. pooch's
own DOI resolver asks doi.org and then hard-codes zenodo.org, so it cannot be pointed at a mirror
or a test server; the records API it reads is read here instead, from a base URL that defaults to
https://zenodo.org (the DOI 10.5281/zenodo.N names record N).

An archive is unpacked into a hidden temporary folder beside its destination and renamed into
place only when every member has been extracted and its CRC checked, so DIR holds a complete
global_dataset/ (or trained_models/, TrainData/ ...) or none. download.json records what was
unpacked from which archive with which checksum; a rerun that finds its entry and the folder does
nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pooch
import requests
from tqdm import tqdm

from lsd import landslide4sense as l4s
from lsd.errors import (
    InputNotFound,
    InvalidFile,
    InvalidValue,
    OutputExists,
    OutputNotWritable,
    ServiceUnavailable,
)
from lsd.files import atomic_path, check_writable, read_json, write_failure, write_json
from lsd.limits import check_disk
from lsd.pipeline.paper.facts import DATA_ARCHIVE, MODELS_ARCHIVE, ZENODO_RECORD

ZENODO_URL = "https://zenodo.org"
RECORD_FILE = "download.json"
DOWNLOADS_DIR = ".downloads"
TIMEOUT_S = 60
JUNK_TOP = {"__MACOSX"}

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ZenodoRecord:
    """A Zenodo record and the archives lsd fetches from it, each unpacked into the folder of
    its name without `.zip`."""

    record: int
    archives: tuple[str, ...]

    @property
    def doi(self) -> str:
        return f"10.5281/zenodo.{self.record}"

    @property
    def listing_file(self) -> str:
        """Where the records-API answer is kept in DIR, so placed archives can be checked."""
        return f"zenodo-{self.record}.json"


def paper_record() -> ZenodoRecord:
    return ZenodoRecord(ZENODO_RECORD, (DATA_ARCHIVE, MODELS_ARCHIVE))


def landslide4sense_record() -> ZenodoRecord:

    return ZenodoRecord(l4s.ZENODO_RECORD, tuple(l4s.ARCHIVES.values()))


@dataclass(frozen=True)
class RecordFile:
    """One file of a Zenodo record as its API lists it."""

    name: str
    url: str
    md5: str | None
    size: int | None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _network_reason(exc: BaseException) -> str:
    """requests' messages nest urllib3's; the user needs the kind of failure."""

    text = str(exc)
    if isinstance(exc, requests.exceptions.ProxyError):
        return "the proxy refused the connection"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed (a proxy that inspects traffic?)"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {TIMEOUT_S} s"
    for needle, why in (
        ("Failed to resolve", "host name not resolved: no network or DNS"),
        ("Name or service not known", "host name not resolved: no network or DNS"),
        ("Connection refused", "connection refused"),
        ("Network is unreachable", "network unreachable"),
        ("Connection reset", "connection reset"),
    ):
        if needle in text:
            return why
    return _reason(exc)


def _listing_url(base_url: str, record: int) -> str:
    return f"{base_url.rstrip('/')}/api/records/{record}"


def parse_listing(raw: Any, where: str) -> list[RecordFile]:
    """Files of a records-API answer, in any form Zenodo has used: key with "md5:..."
    checksums or filename with bare md5; a list, or InvenioRDM's files.entries.

    The file's own link is `content` (InvenioRDM), else `download` (before 2023, and the
    transitional answers of 2023), else `self`, which only today's answer points at the file:
    in InvenioRDM's form it is the file's metadata, in the transitional one a 404."""
    files = raw.get("files") if isinstance(raw, dict) else None
    if isinstance(files, dict):  # InvenioRDM answers can nest the list under "entries"
        files = files.get("entries")
        files = list(files.values()) if isinstance(files, dict) else files
    if not isinstance(files, list) or not files:
        raise ServiceUnavailable(f"{where}: the answer lists no files (not a Zenodo record?)")
    out = []
    for item in files:
        name = item.get("key") or item.get("filename")
        links = item.get("links") or {}
        url = links.get("content") or links.get("download") or links.get("self")
        if not name or not url:
            raise ServiceUnavailable(f"{where}: a file entry lacks its name or download link")
        checksum = str(item.get("checksum") or "")
        md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else (checksum or None)
        size = item.get("size") or item.get("filesize")
        out.append(RecordFile(name, url, md5, int(size) if size else None))
    return out


def fetch_listing(base_url: str, record: int = ZENODO_RECORD) -> tuple[list[RecordFile], Any]:
    """The record's files from the records API; one line when it cannot be reached."""

    url = _listing_url(base_url, record)
    try:
        response = requests.get(url, timeout=TIMEOUT_S)
        response.raise_for_status()
        raw = response.json()
    except requests.HTTPError as exc:
        raise ServiceUnavailable(f"{url}: {_reason(exc)}") from None
    except requests.RequestException as exc:
        raise ServiceUnavailable(f"cannot reach {url} ({_network_reason(exc)})") from None
    except ValueError:
        raise ServiceUnavailable(f"{url}: the answer is not JSON (a proxy page?)") from None
    return parse_listing(raw, url), raw


class ResumingDownloader:
    """A pooch downloader that keeps what has arrived in `<name>.part` and, on the next try,
    asks only for the rest (an HTTP Range request); a server that ignores Range sends it all
    again. pooch still checks the hash of the whole file and deletes it when wrong."""

    def __init__(self, part: Path, *, progress: bool, timeout: float = TIMEOUT_S) -> None:
        self.part, self.progress, self.timeout = part, progress, timeout

    def __call__(self, url: str, output_file: Any, pooch_obj: Any = None, **_: Any) -> None:

        have = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
            if r.status_code == 416:  # the part is all there is (or more): start over
                self.part.unlink()
                return self(url, output_file, pooch_obj)
            r.raise_for_status()
            resumed = have > 0 and r.status_code == 206
            size = int(r.headers.get("content-length") or 0) + (have if resumed else 0)
            with (
                self.part.open("ab" if resumed else "wb") as f,
                tqdm(total=size or None, initial=have if resumed else 0, unit="B",
                     unit_scale=True, disable=not self.progress, desc=self.part.stem) as bar,
            ):  # fmt: skip
                for chunk in r.iter_content(chunk_size=1 << 16):
                    f.write(chunk)
                    bar.update(len(chunk))
        shutil.move(str(self.part), str(output_file))


def md5_of(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- unpacking


def _members(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    for info in members:
        parts = PurePosixPath(info.filename).parts
        if not parts or info.filename.startswith("/") or ".." in parts:
            raise InvalidFile(
                f"{archive}: member {info.filename!r} would unpack outside its folder"
            )
    return members


def unpack(archive: Path, dest: Path) -> Path:
    """Extract `archive` into the folder `dest`, which appears only when complete.

    A zip whose entries all sit in one top folder named like `dest` loses that level, so
    global_dataset.zip becomes DIR/global_dataset/train_val/..., not .../global_dataset/global...
    """
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise InvalidFile(f"{archive}: not a complete zip archive ({_reason(exc)}); "
                          "nothing was unpacked") from None  # fmt: skip
    except OSError as exc:
        raise InputNotFound(f"{archive}: cannot read ({exc.strerror or exc})") from None
    with zf:
        members = _members(zf, archive)
        files = [m for m in members if not m.is_dir() and _top(m) not in JUNK_TOP]
        if not files:
            raise InvalidFile(
                f"{archive}: holds no files (an empty or unfinished archive); nothing was unpacked"
            )
        check_disk(dest.parent, sum(m.file_size for m in members), f"unpacking {archive.name}")
        _extract(zf, members, archive, dest)
    return dest


def _top(info: zipfile.ZipInfo) -> str:
    return PurePosixPath(info.filename).parts[0]


def _extract(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], archive: Path, dest: Path
) -> None:
    """Every member into a temporary folder that becomes `dest` when all are there; a damaged
    member and a full disk are told apart (the disk is named as the cause, not the archive)."""
    with atomic_path(dest, directory=True) as tmp:
        for info in members:
            try:
                zf.extract(info, tmp)
            except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as exc:
                failure = write_failure(exc, dest, tmp) if isinstance(exc, OSError) else None
                if failure is not None:
                    raise OutputNotWritable(
                        f"{failure.message} while unpacking {archive}; nothing was unpacked"
                    ) from None
                raise InvalidFile(
                    f"{archive}: member {info.filename} is damaged ({_reason(exc)}); "
                    "nothing was unpacked"
                ) from None
        tops = [p for p in tmp.iterdir() if p.name not in JUNK_TOP]
        if len(tops) == 1 and tops[0].is_dir() and tops[0].name == dest.name:
            inner = tmp / f".{dest.name}.inner"
            tops[0].rename(inner)
            for junk in tmp.iterdir():
                if junk != inner:
                    shutil.rmtree(junk) if junk.is_dir() else junk.unlink()
            for child in inner.iterdir():
                child.rename(tmp / child.name)
            inner.rmdir()


# --------------------------------------------------------------------------- the download


@dataclass
class Wanted:
    """One archive to bring into DIR: its name, the folder it becomes, and where it comes from."""

    name: str
    folder: str
    archive: Path | None = None  # a file the user placed by hand

    @classmethod
    def of(cls, name: str) -> Wanted:
        return cls(name, name.removesuffix(".zip"))


def _record(to: Path) -> dict[str, Any]:
    path = to / RECORD_FILE
    raw = read_json(path) if path.exists() else {}
    return raw if isinstance(raw, dict) else {}


def _recorded(to: Path, want: Wanted) -> bool:
    return isinstance(_record(to).get(want.name), dict)


def is_complete(to: Path, want: Wanted) -> bool:
    """Recorded in download.json and there, with something in it (an older lsd recorded an
    empty archive as unpacked; that folder is made again)."""
    folder = to / want.folder
    return _recorded(to, want) and folder.is_dir() and any(folder.iterdir())


def _note(to: Path, want: Wanted, md5: str, size: int, source: str, checked: str) -> None:
    record = _record(to)
    record[want.name] = {
        "folder": want.folder, "md5": md5, "size": size, "source": source, "md5_check": checked,
        "unpacked_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }  # fmt: skip
    write_json(to / RECORD_FILE, record)


def _published(to: Path, rec: ZenodoRecord) -> dict[str, RecordFile]:
    """The file list saved by an earlier download, so a placed archive can be checked offline."""
    path = to / rec.listing_file
    if not path.exists():
        return {}
    try:
        return {f.name: f for f in parse_listing(read_json(path), str(path))}
    except (ServiceUnavailable, InvalidFile):
        return {}


def _from_archive(to: Path, want: Wanted, rec: ZenodoRecord, echo: Echo) -> None:
    archive = want.archive
    assert archive is not None
    if not archive.is_file():
        raise InputNotFound(f"{archive}: archive not found", field="from_archive")
    md5, size = md5_of(archive), archive.stat().st_size
    known = _published(to, rec).get(want.name)
    if known is not None and known.md5 and known.md5 != md5:
        raise InvalidFile(
            f"{archive}: md5 {md5} differs from the {known.md5} Zenodo publishes for "
            f"{want.name}; not unpacked (the file was left where it is)"
        )
    checked = "published md5 matched" if known and known.md5 else "zip CRCs only"
    if checked == "zip CRCs only":
        echo(f"{want.name}: no published checksum at hand (run once online to record it); "
             "checking the zip's own CRCs")  # fmt: skip
    unpack(archive, to / want.folder)
    _note(to, want, md5, size, str(archive.resolve()), checked)


def _download(
    to: Path, want: Wanted, files: dict[str, RecordFile], rec: ZenodoRecord, progress: bool
) -> None:

    entry = files.get(want.name)
    if entry is None:
        raise ServiceUnavailable(
            f"Zenodo record {rec.record} lists no {want.name} (it has "
            f"{', '.join(sorted(files)) or 'no files'})"
        )
    if not entry.md5:
        raise ServiceUnavailable(f"Zenodo record {rec.record} publishes no md5 for {want.name}")
    downloads = to / DOWNLOADS_DIR
    downloads.mkdir(parents=True, exist_ok=True)
    part = downloads / f"{want.name}.part"
    try:
        path = Path(pooch.retrieve(
            entry.url, known_hash=f"md5:{entry.md5}", fname=want.name, path=downloads,
            downloader=ResumingDownloader(part, progress=progress),
        ))  # fmt: skip
    except ValueError as exc:  # pooch: the downloaded bytes fail the published hash
        raise InvalidFile(f"{want.name}: {_reason(exc)}; the download was deleted, nothing "
                          "was unpacked") from None  # fmt: skip
    except requests.RequestException as exc:
        raise ServiceUnavailable(f"cannot download {entry.url} ({_network_reason(exc)})") from None
    unpack(path, to / want.folder)
    _note(to, want, entry.md5, path.stat().st_size, entry.url, "published md5 matched")
    path.unlink()  # unpacked and recorded; the archive would only double the disk space
    if downloads.is_dir() and not any(downloads.iterdir()):
        downloads.rmdir()


def wanted_archives(
    names: Sequence[str], archives: Sequence[Path], rec: ZenodoRecord
) -> list[Wanted]:
    """What to fetch: the archives named, and each placed archive (which must bear the name of
    one of the record's archives) from its file instead of a download."""
    wants = {n: Wanted.of(n) for n in names}
    for archive in archives:
        name = Path(archive).name
        if name not in rec.archives:
            raise InvalidValue(
                f"{archive}: expected a file named {' or '.join(rec.archives)}",
                field="from_archive",
            )
        wants.setdefault(name, Wanted.of(name)).archive = Path(archive)
    return list(wants.values())


def download_record(
    to: Path | str,
    rec: ZenodoRecord,
    wants: Sequence[Wanted],
    *,
    base_url: str = ZENODO_URL,
    progress: bool = True,
    echo: Echo = print,
) -> list[Path]:
    """Bring the wanted archives of `rec` into `to`; returns the unpacked folders. Placed
    archives are checked and unpacked without network; the record is listed only when something
    must be fetched. A `to` this call creates is removed again if it fails before putting
    anything there (a partial download is kept: the rerun resumes it)."""
    made = not Path(to).exists()
    try:
        return _download_record(Path(to), rec, wants, base_url, progress, echo)
    except BaseException:
        if made:
            _drop_empty(Path(to))
        raise


def _drop_empty(folder: Path) -> None:
    """Remove `folder` if nothing is in it but an empty download folder."""
    downloads = folder / DOWNLOADS_DIR
    with contextlib.suppress(OSError):
        if any(p != downloads for p in folder.iterdir()):
            return
        if downloads.is_dir() and not any(downloads.iterdir()):
            downloads.rmdir()
        if not any(folder.iterdir()):
            folder.rmdir()


def _download_record(
    to: Path,
    rec: ZenodoRecord,
    wants: Sequence[Wanted],
    base_url: str,
    progress: bool,
    echo: Echo,
) -> list[Path]:
    to = check_writable(to)
    for want in wants:
        folder = to / want.folder
        if folder.exists() and not is_complete(to, want) and not _recorded(to, want):
            raise OutputExists(
                f"{folder}: exists but was not unpacked by lsd download; move it away (lsd "
                "never deletes what it did not write) or import it directly"
            )
    todo = [w for w in wants if not is_complete(to, w)]
    for want in wants:
        if want not in todo:
            echo(f"{want.name}: already complete in {to / want.folder}")
    files: dict[str, RecordFile] = {}
    if any(w.archive is None for w in todo):
        listing, raw = fetch_listing(base_url, rec.record)
        write_json(to / rec.listing_file, raw)
        files = {f.name: f for f in listing}
    for want in todo:
        if want.archive is not None:
            _from_archive(to, want, rec, echo)
        else:
            _download(to, want, files, rec, progress)
        echo(f"{want.name}: unpacked into {to / want.folder}")
    return [to / w.folder for w in wants]


def download_paper(
    to: Path | str,
    *,
    data: bool = False,
    models: bool = False,
    archives: Sequence[Path] = (),
    base_url: str = ZENODO_URL,
    progress: bool = True,
    echo: Echo = print,
) -> list[Path]:
    """Bring the paper's archives into `to` (both when neither is asked for and none is placed);
    returns the unpacked folders. Placed `archives` are checked and unpacked without network."""
    rec = paper_record()
    names = [n for n, on in ((DATA_ARCHIVE, data), (MODELS_ARCHIVE, models)) if on]
    wants = wanted_archives(names or ([] if archives else list(rec.archives)), archives, rec)
    return download_record(to, rec, wants, base_url=base_url, progress=progress, echo=echo)


def download_landslide4sense(
    to: Path | str,
    *,
    archives: Sequence[Path] = (),
    base_url: str = ZENODO_URL,
    progress: bool = True,
    echo: Echo = print,
) -> list[Path]:
    """Bring Landslide4Sense's three split archives (Zenodo record 10463239) into `to` as
    TrainData/, ValidData/ and TestData/; placed `archives` are used instead of downloads."""
    rec = landslide4sense_record()
    wants = wanted_archives(rec.archives, archives, rec)
    return download_record(to, rec, wants, base_url=base_url, progress=progress, echo=echo)
