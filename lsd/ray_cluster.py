"""Connecting to a Ray cluster, without torch: the grid, large-area prediction and STAC fetches
all run their tasks on Ray (https://docs.ray.io), an optional extra (`pip install 'lsd[ray]'`).

A dead address fails in seconds with one line (ray.init alone retries for minutes), and only what
lsd connected is disconnected at the end, so a caller already inside a Ray job keeps its cluster.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

from lsd.errors import InvalidValue, ServiceUnavailable
from lsd.versions import RAY, require

INSTALL_HINT = "pip install 'lsd[ray]'"
CONNECT_TIMEOUT_S = 10.0


def import_ray() -> Any:
    """The ray module, or one line saying how to install it."""
    try:
        import ray
    except ImportError:
        raise InvalidValue(
            f"executor 'ray' needs Ray, which is not installed here: {INSTALL_HINT}",
            field="executor",
        ) from None
    require(*RAY)  # installed, but perhaps below lsd's floor for the extra
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    text = address.removeprefix("ray://")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_answers(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within seconds, not minutes, when nothing listens at a Ray address (ray.init itself
    retries for minutes against a dead address)."""
    if address == "auto":
        return
    hp = _host_port(address)
    if hp is None:
        raise InvalidValue(
            f"ray address '{address}' is not HOST:PORT, ray://HOST:PORT or auto",
            field="ray_address",
        )
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ServiceUnavailable(
            f"ray address {address} does not answer ({reason}); start the cluster with "
            "'ray start --head' there, or check the address",
            field="ray_address",
        ) from None


@contextlib.contextmanager
def connect(address: str | None = None) -> Iterator[Any]:
    """Ray, connected: to the cluster at `address`, to the one this process already joined, or
    to a new local cluster on this machine. Disconnects at the end only what it connected."""

    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        check_answers(address)
    try:
        ray.init(
            address=address or None, include_dashboard=False, logging_level=logging.WARNING,
            log_to_driver=True,
        )  # fmt: skip
    except ConnectionError as exc:
        raise ServiceUnavailable(
            f"no Ray cluster at {address or 'this machine'} ({str(exc).splitlines()[0][:160]})",
            field="ray_address",
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()
