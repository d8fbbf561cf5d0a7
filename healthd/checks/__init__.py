"""The check kinds. `CheckSpec` below is the only list of them: one module, one line."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from healthd.checks.base import Check, SpecBase
from healthd.checks.loop import LoopSpec
from healthd.checks.tcp import TcpSpec

CheckSpec = Annotated[
    TcpSpec
    | LoopSpec,
    Field(discriminator="kind"),
]

__all__ = ["Check", "CheckSpec", "SpecBase"]
