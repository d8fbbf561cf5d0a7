"""`tcp`: a pass means a TCP connection to `address` was established."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Literal

from pydantic import Field

from healthd.checks.base import Context, SpecBase
from healthd.deadline import Deadline
from healthd.model import Observation

ADDRESS_PATTERN = r"^(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):\d{1,5}$"


def split_address(address: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` → (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class TcpSpec(SpecBase):
    kind: Literal["tcp"]
    address: str = Field(pattern=ADDRESS_PATTERN, description="host:port to connect to")

    def build(self, context: Context | None = None) -> TcpCheck:
        return TcpCheck(*split_address(self.address))


class TcpCheck:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    async def __call__(self, deadline: Deadline) -> Observation:
        # The runner's timeout cancels open_connection; nothing is left open on cancel.
        _, writer = await asyncio.open_connection(self.host, self.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return Observation(message=f"connected to {self.host}:{self.port}")
