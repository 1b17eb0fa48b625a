"""A local stand-in for Zenodo: a real HTTP server (http.server, in a thread) that serves a
records-API answer and the archive files, and counts what was asked for."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lsd.paper import ZENODO_RECORD


class _Handler(SimpleHTTPRequestHandler):
    """http.server plus what a download host does: Range requests (206), and, when asked, a
    connection dropped after `cut[path]` bytes of the first answer."""

    counts: Counter
    ranges: list
    cut: dict

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
        self.wfile.write(data[start:stop] if stop is not None else data[start:])
        if stop is not None:
            self.close_connection = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - http.server's signature
        pass


class ZenodoStandIn:
    """Files under `root/files/`, the record answer at `root/api/records/<record>`."""

    def __init__(self, root: Path, url: str, counts: Counter, ranges: list, cut: dict) -> None:
        self.root, self.url, self.counts, self.ranges, self.cut = root, url, counts, ranges, cut

    def drop_after(self, name: str, n_bytes: int) -> None:
        """The next answer for `name` stops after `n_bytes`, as a dropped connection does."""
        self.cut[f"/files/{name}"] = n_bytes

    def publish(
        self, archive: Path, *, md5: str | None = None, legacy: bool = False,
        record: int = ZENODO_RECORD,
    ) -> None:  # fmt: skip
        """Serve `archive` and list it in `record` (the paper's by default) with its md5 (or the
        md5 given, to publish a wrong one)."""
        files = self.root / "files"
        files.mkdir(parents=True, exist_ok=True)
        data = archive.read_bytes()
        (files / archive.name).write_bytes(data)
        digest = md5 or hashlib.md5(data).hexdigest()
        link = f"{self.url}/files/{archive.name}"
        if legacy:
            entry = {"filename": archive.name, "checksum": digest, "filesize": len(data),
                     "links": {"download": link}}  # fmt: skip
        else:
            entry = {"key": archive.name, "checksum": f"md5:{digest}", "size": len(data),
                     "links": {"self": link}}  # fmt: skip
        listing = self.root / "api" / "records" / str(record)
        listing.parent.mkdir(parents=True, exist_ok=True)
        old = json.loads(listing.read_text()) if listing.exists() else {"files": []}
        others = [f for f in old["files"] if (f.get("key") or f.get("filename")) != archive.name]
        answer = {"id": record, "doi": f"10.5281/zenodo.{record}", "files": [*others, entry]}
        listing.write_text(json.dumps(answer))

    def requests_for(self, name: str) -> int:
        return self.counts[f"/files/{name}"]


@contextmanager
def zenodo_stand_in(root: Path) -> Iterator[ZenodoStandIn]:
    counts: Counter = Counter()
    ranges: list = []
    cut: dict = {}
    handler = type("Handler", (_Handler,), {"counts": counts, "ranges": ranges, "cut": cut})
    root.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield ZenodoStandIn(root, url, counts, ranges, cut)
    finally:
        server.shutdown()
        server.server_close()
