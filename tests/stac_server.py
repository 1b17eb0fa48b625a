"""A local STAC API and file server for the STAC source's tests (no network).

It answers as the real catalogs do, in their schema: a landing page with conformance classes
and a POST search link, /collections, /collections/{id}, and POST /search with `collections`,
`intersects` and `datetime`, returning ItemCollections a page at a time. Paging follows the
catalog it imitates: the Planetary Computer's (pgstac) next link repeats the body with a
`token`, Earth Search's (stac-server) next link carries `next` and asks the client to merge.
Files under /files/ are served with HTTP range requests, as blob storage serves COGs; every
request is logged so that tests can count downloads.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
]


@dataclass
class Catalog:
    """What one imitated API holds: collections by id, items, and its paging style."""

    root: str  # path of the API root, e.g. /api/stac/v1
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    paging: str = "pgstac"  # or "stac-server"
    page_size: int = 2


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _matches(item: dict[str, Any], body: dict[str, Any]) -> bool:
    import shapely.geometry

    if body.get("collections") and item["collection"] not in body["collections"]:
        return False
    footprint = shapely.geometry.shape(item["geometry"])
    if body.get("intersects") and not footprint.intersects(
        shapely.geometry.shape(body["intersects"])
    ):
        return False
    if body.get("datetime"):
        start, _, end = body["datetime"].partition("/")
        when = _parse_time(item["properties"]["datetime"])
        if start not in ("", "..") and when < _parse_time(start):
            return False
        if end not in ("", "..") and when > _parse_time(end):
            return False
    return True


class Server:
    """The running server; `url` is its base, `requests` every (method, path) it answered."""

    def __init__(self, files: Path) -> None:
        self.files = files
        self.catalogs: dict[str, Catalog] = {}
        self.requests: list[tuple[str, str]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def add(self, catalog: Catalog) -> str:
        self.catalogs[catalog.root] = catalog
        return self.url + catalog.root

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _json(self, obj: Any, status: int = 200) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/geo+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append(("GET", self.path))
                if self.path.startswith("/files/"):
                    return self._file()
                path = self.path.split("?")[0].rstrip("/")
                for root, cat in server.catalogs.items():
                    if path == root:
                        return self._json(server.landing(cat))
                    if path == root + "/conformance":
                        return self._json({"conformsTo": CONFORMANCE})
                    if path == root + "/collections":
                        return self._json(
                            {"collections": list(cat.collections.values()), "links": []}
                        )
                    if path.startswith(root + "/collections/"):
                        cid = path[len(root + "/collections/") :]
                        if cid in cat.collections:
                            return self._json(cat.collections[cid])
                self._json({"code": "NotFound", "description": self.path}, 404)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(("POST", self.path))
                path = self.path.rstrip("/")
                for root, cat in server.catalogs.items():
                    if path == root + "/search":
                        return self._json(server.search(cat, body))
                self._json({"code": "NotFound"}, 404)

            def _file(self) -> None:
                target = server.files / self.path[len("/files/") :].split("?")[0]
                if not target.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = target.read_bytes()
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    a, _, b = rng[6:].partition("-")
                    start, end = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
                    chunk = data[start : end + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                else:
                    chunk = data
                    self.send_response(200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Type", "image/tiff")
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                # GDAL hangs up once it has the bytes it wanted
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(chunk)

        return Handler

    def landing(self, cat: Catalog) -> dict[str, Any]:
        base = self.url + cat.root
        return {
            "type": "Catalog",
            "id": "test-stac",
            "stac_version": "1.0.0",
            "description": "local stand-in",
            "conformsTo": CONFORMANCE,
            "links": [
                {"rel": "self", "href": base, "type": "application/json"},
                {"rel": "root", "href": base, "type": "application/json"},
                {"rel": "data", "href": f"{base}/collections", "type": "application/json"},
                {"rel": "conformance", "href": f"{base}/conformance", "type": "application/json"},
                {
                    "rel": "search",
                    "href": f"{base}/search",
                    "type": "application/geo+json",
                    "method": "GET",
                },
                {
                    "rel": "search",
                    "href": f"{base}/search",
                    "type": "application/geo+json",
                    "method": "POST",
                },
            ],
        }

    def search(self, cat: Catalog, body: dict[str, Any]) -> dict[str, Any]:
        offset = 0
        if cat.paging == "pgstac" and str(body.get("token", "")).startswith("next:"):
            offset = int(body["token"][5:])
        elif cat.paging == "stac-server" and body.get("next"):
            offset = int(body["next"])
        matched = [i for i in cat.items if _matches(i, body)]
        page = matched[offset : offset + cat.page_size]
        links = []
        if offset + cat.page_size < len(matched):
            nxt = offset + cat.page_size
            if cat.paging == "pgstac":
                links.append(
                    {
                        "rel": "next",
                        "type": "application/geo+json",
                        "method": "POST",
                        "href": f"{self.url}{cat.root}/search",
                        "body": {
                            **{k: v for k, v in body.items() if k != "token"},
                            "token": f"next:{nxt}",
                        },
                        "merge": False,
                    }
                )
            else:
                links.append(
                    {
                        "rel": "next",
                        "method": "POST",
                        "href": f"{self.url}{cat.root}/search",
                        "body": {"next": str(nxt)},
                        "merge": True,
                    }
                )
        return {
            "type": "FeatureCollection",
            "features": page,
            "links": links,
            "numberMatched": len(matched),
            "numberReturned": len(page),
            "context": {"limit": cat.page_size, "matched": len(matched), "returned": len(page)},
        }


@contextmanager
def running(files: Path) -> Iterator[Server]:
    server = Server(files)
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


@contextmanager
def silent_server() -> Iterator[str]:
    """A server that accepts connections and never answers (a hung catalog)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api/stac/v1"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        sock.close()
