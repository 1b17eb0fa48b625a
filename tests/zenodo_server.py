"""A local stand-in for Zenodo: a real HTTP server (http.server, in a thread) that serves a
records-API answer and the archive files, and counts what was asked for."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lsd.pipeline.paper.facts import ZENODO_RECORD

FILE_ID = "39922d36-4a0f-4650-9a07-53c703528e62"  # a file id the records API answers 404 for
METADATA = "api/file-metadata"  # where the native form's links.self points: JSON, not the file


class _Handler(SimpleHTTPRequestHandler):
    """http.server plus what a download host does: Range requests (206), and, when asked, a
    connection dropped after `cut[path]` bytes of the first answer, or a slow line
    (`slow[path]` = (bytes per write, seconds between writes))."""

    counts: Counter
    ranges: list
    cut: dict
    slow: dict

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.counts[self.path] += 1
        path = Path(self.translate_path(self.path))
        if not path.is_file() or not self.path.startswith("/files/"):
            return super().do_GET()
        data = path.read_bytes()
        start = 0
        header = self.headers.get("Range")
        self.ranges.append((self.path, header))
        if header and header.startswith("bytes=") and header.endswith("-"):
            start = int(header[len("bytes=") : -1])
        if start >= len(data) and start:
            self.send_response(416)
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        stop = self.cut.pop(self.path, None)
        body = data[start:stop] if stop is not None else data[start:]
        chunk, delay = self.slow.get(self.path, (len(body) or 1, 0.0))
        try:
            for i in range(0, len(body), chunk):
                self.wfile.write(body[i : i + chunk])
                time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError):  # the client went away
            return
        if stop is not None:
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        pass


class ZenodoStandIn:
    """Files under `root/files/`, the record answer at `root/api/records/<record>`."""

    def __init__(
        self, root: Path, url: str, counts: Counter, ranges: list, cut: dict, slow: dict
    ) -> None:
        self.root, self.url, self.counts, self.ranges = root, url, counts, ranges
        self.cut, self.slow = cut, slow

    def drop_after(self, name: str, n_bytes: int) -> None:
        """The next answer for `name` stops after `n_bytes`, as a dropped connection does."""
        self.cut[f"/files/{name}"] = n_bytes

    def publish(
        self, archive: Path, *, md5: str | None = None, legacy: bool = False, form: str = "",
        record: int = ZENODO_RECORD,
    ) -> None:  # fmt: skip
        """Serve `archive` and list it in `record` (the paper's by default) with its md5 (or the
        md5 given, to publish a wrong one).

        The listing takes the form Zenodo gives today (key, links.self = the file), or with
        `legacy` the one before 2023 (filename, links.download), or `form`:
        - "transitional" (2023, as the deposit API still answers): filename, bare md5,
          links.self to a file id the API does not know (404) and links.download = the file;
        - "native" (InvenioRDM, files.entries keyed by name): links.self = the file's
          metadata (JSON), links.content = the file.
        """
        files = self.root / "files"
        files.mkdir(parents=True, exist_ok=True)
        data = archive.read_bytes()
        (files / archive.name).write_bytes(data)
        digest = md5 or hashlib.md5(data).hexdigest()
        link = f"{self.url}/files/{archive.name}"
        if form == "transitional":
            entry = {"id": FILE_ID, "filename": archive.name, "checksum": digest,
                     "filesize": len(data), "links": {"self": f"{self.url}/api/files/{FILE_ID}",
                                                      "download": link}}  # fmt: skip
        elif form == "native":
            entry = {"key": archive.name, "checksum": f"md5:{digest}", "size": len(data),
                     "links": {"self": f"{self.url}/{METADATA}/{archive.name}",
                               "content": link}}  # fmt: skip
            meta = self.root / METADATA / archive.name
            meta.parent.mkdir(parents=True, exist_ok=True)
            meta.write_text(json.dumps({k: v for k, v in entry.items() if k != "links"}))
        elif legacy:
            entry = {"filename": archive.name, "checksum": digest, "filesize": len(data),
                     "links": {"download": link}}  # fmt: skip
        else:
            entry = {"key": archive.name, "checksum": f"md5:{digest}", "size": len(data),
                     "links": {"self": link}}  # fmt: skip
        listing = self.root / "api" / "records" / str(record)
        listing.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(listing.read_text()) if listing.exists() else {"files": []}
        listed = old["files"]
        listed = list(listed["entries"].values()) if isinstance(listed, dict) else listed
        others = [f for f in listed if (f.get("key") or f.get("filename")) != archive.name]
        entries: list | dict = [*others, entry]
        if form == "native":
            entries = {"enabled": True, "entries": {e["key"]: e for e in entries}}
        answer = {"id": record, "doi": f"10.5281/zenodo.{record}", "files": entries}
        listing.write_text(json.dumps(answer))

    def requests_to(self, path: str) -> int:
        """How often `path` (as the URL after the host) was asked for."""
        return self.counts[path]

    def requests_for(self, name: str) -> int:
        return self.counts[f"/files/{name}"]

    def slow_down(self, name: str, chunk: int, delay_s: float) -> None:
        """Answers for `name` come `chunk` bytes at a time, `delay_s` apart (a slow line), so
        a test can stop a download midway."""
        self.slow[f"/files/{name}"] = (chunk, delay_s)


@contextmanager
def zenodo_stand_in(root: Path) -> Iterator[ZenodoStandIn]:
    counts: Counter = Counter()
    ranges: list = []
    cut: dict = {}
    slow: dict = {}
    handler = type("Handler", (_Handler,),
                   {"counts": counts, "ranges": ranges, "cut": cut, "slow": slow})  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield ZenodoStandIn(root, url, counts, ranges, cut, slow)
    finally:
        server.shutdown()
        server.server_close()
