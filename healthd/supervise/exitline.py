"""How the child ended, healthd's exit code from it, and the one-line exit summary (pure).

    exit: SIGTERM; draining 5.00 s; child SIGTERM → exited 0 in 1.21 s; probes in flight 0; code 0

Exit code: the child's own; died of the stop signal healthd sent → 0 (it stopped as
asked: uvicorn, for one, re-raises SIGTERM after a clean stop); of any other signal N →
128 + N, so SIGKILL after `stop_timeout` → 137.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any

from healthd.checks.process import uptime


def signame(signum: int) -> str:
    """`SIGTERM`; real-time signals, which `signal.Signals` does not name: `SIGRTMIN+2`."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


@dataclass(frozen=True, slots=True)
class Ended:
    """How a process ended: its exit code, or the signal that killed it."""

    code: int | None = None
    signal: int | None = None

    @classmethod
    def of(cls, result: os.waitid_result) -> Ended:
        if result.si_code == os.CLD_EXITED:
            return cls(code=result.si_status)
        return cls(signal=result.si_status)  # CLD_KILLED or CLD_DUMPED

    def describe(self) -> str:
        return f"exited {self.code}" if self.signal is None else f"killed by {signame(self.signal)}"


@dataclass(frozen=True, slots=True)
class Stop:
    """What happened from the first signal (or the child's own end) to the child's end."""

    reason: str  # the signal that started the stop, or "child ended"
    draining: float  # seconds from the signal until the stop signal went (or the child ended)
    ended: Ended
    took: float  # from the stop signal to the end; the child's uptime when it ended on its own
    sent: str | None = None  # the stop signal healthd sent; None: the child ended on its own
    drain_cut: str = ""  # what cut the drain short: a second signal's name, or "the child ended"
    killed: str = ""  # why SIGKILL went: "stop_timeout" or a second signal's name
    in_flight: int = 0  # probe requests in flight when the listeners closed
    cancelled: int = 0  # of those, cancelled at the end of grace

    @property
    def code(self) -> int:
        ended = self.ended
        if ended.signal is None:
            return ended.code or 0
        if self.sent is not None and ended.signal == signal.Signals[self.sent] and not self.killed:
            return 0
        return 128 + ended.signal

    def line(self) -> str:
        cut = f" (cut short: {self.drain_cut})" if self.drain_cut else ""
        probes = f"probes in flight {self.in_flight}"
        probes += f" ({self.cancelled} cut at the end of grace)" if self.cancelled else ""
        return (
            f"exit: {self.reason}; draining {self.draining:.2f} s{cut}; child {self._child()}; "
            f"{probes}; code {self.code}"
        )

    def _child(self) -> str:
        how = self.ended.describe()
        if self.sent is None:
            return f"{how} on its own after {uptime(self.took)} up"
        if self.killed == "stop_timeout":
            return f"{self.sent} → ignored it for {self.took:.2f} s (stop_timeout), SIGKILL → {how}"
        if self.killed:
            return f"{self.sent} → SIGKILL at a second {self.killed} → {how} in {self.took:.2f} s"
        return f"{self.sent} → {how} in {self.took:.2f} s"

    def fields(self) -> dict[str, Any]:
        """The same facts for a JSON log line (`event: exit`, `exit: {...}`)."""
        return {
            "reason": self.reason,
            "draining_s": round(self.draining, 3),
            "drain_cut": self.drain_cut or None,
            "stop_signal": self.sent,
            "child": self.ended.describe(),
            "child_code": self.ended.code,
            "child_signal": signame(self.ended.signal) if self.ended.signal else None,
            "stop_s": round(self.took, 3) if self.sent is not None else None,
            "killed": self.killed or None,
            "probes_in_flight": self.in_flight,
            "probes_cancelled": self.cancelled,
            "code": self.code,
        }
