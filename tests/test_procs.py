"""The test harness itself: a port taken between choosing it and binding it is retried."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.procs import Healthd

pytestmark = pytest.mark.slow


async def test_a_taken_port_is_replaced(tmp_path: Path) -> None:
    """Someone binds the chosen port first: the daemon starts on fresh ports instead."""
    h = Healthd(tmp_path, 'server: {listen: "127.0.0.1:{port}"}\n')
    taken = h.port
    with socket.create_server(("127.0.0.1", taken)):
        async with h:
            assert h.port != taken
            assert any("listening on" in line for line in h.lines)
