"""The embedded NATS keeps its port across restarts, even when clients were connected."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

from service.dev.embedded import EmbeddedNats

pytestmark = pytest.mark.embedded


def _time_wait_on(port: int) -> bool:
    """Whether a TCP socket on 127.0.0.1:`port` is in TIME_WAIT (state 06 in /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if local == f"0100007F:{port:04X}" and state == "06":
            return True
    return False


async def test_restart_after_a_connected_client_keeps_the_port() -> None:
    """A client connected at the stop leaves TIME_WAIT behind; the restart still gets the port."""
    folder = Path(tempfile.mkdtemp(prefix="authledger-nats-port-"))
    try:
        first = await asyncio.to_thread(EmbeddedNats.start, folder)
        nc = NATS()
        try:
            await nc.connect(first.url, max_reconnect_attempts=0, allow_reconnect=False)
            await nc.flush()
            await asyncio.to_thread(first.stop)  # the server closes first: TIME_WAIT on its side
        finally:
            await nc.close()
        assert _time_wait_on(first.port), "the stop left no TIME_WAIT socket: nothing tested"
        with socket.socket() as probe, pytest.raises(OSError, match="in use"):
            probe.bind(("127.0.0.1", first.port))  # the old probe's view: the port looks taken
        second = await asyncio.to_thread(EmbeddedNats.start, folder)
        try:
            assert second.port == first.port
            assert second.url == first.url
        finally:
            await asyncio.to_thread(second.stop)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
