"""Drain slots (reference §14): at most `max_draining` instances drain voluntarily at once.

Slot n is the key `/healthd/<service>/slots/<n>` holding the instance's name, put on the
instance's lease in a transaction that succeeds only if the key does not exist (so two
instances never hold one slot, and a dead instance's slot goes with its lease). Giving a
slot back deletes it only if it still names us.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from healthd.fleet.etcd import Etcd, EtcdError, b64, unb64
from healthd.fleet.view import SLOTS, View

log = logging.getLogger("healthd.fleet")


@dataclass(frozen=True, slots=True)
class Taken:
    """What a drain got: `ok` False means no slot was free (409), `holders` who has them."""

    ok: bool
    slot: int | None = None
    holders: list[str] = field(default_factory=list)
    note: str = ""


class Slots:
    """This instance's drain slot: which one it holds, and whether it wants one."""

    def __init__(self, etcd: Etcd, prefix: str, me: str, limit: int, view: View) -> None:
        self.etcd, self.prefix, self.me, self.limit, self.view = etcd, prefix, me, limit, view
        self.held: int | None = None
        self.wanted = False  # draining through a slot: taken back after a lost lease

    def key(self, n: int) -> str:
        return f"{self.prefix}{SLOTS}{n}"

    async def take(self, lease: int, force: bool = False) -> Taken:
        """Take a free slot on `lease` (0: etcd unreachable, drain without one)."""
        if self.held is not None:
            return Taken(True, self.held)
        if not lease:
            return Taken(True, note="fleet: etcd unreachable; draining without a slot")
        try:
            holders = []
            for n in range(self.limit):
                holder = await self._try(n, lease)
                if holder == self.me:
                    self.held, self.wanted = n, True
                    return Taken(True, n)
                holders.append(holder)
        except EtcdError as exc:
            return Taken(True, note=f"fleet: no slot taken ({exc}); draining anyway")
        if force:
            return Taken(True, holders=holders, note="forced: draining without a slot")
        return Taken(False, holders=holders)

    async def _try(self, n: int, lease: int) -> str:
        """Put our name on slot `n` if nobody holds it; the holder's name either way."""
        key = b64(self.key(n))
        ok, responses = await self.etcd.txn(
            [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            [{"request_put": {"key": key, "value": b64(self.me), "lease": str(lease)}}],
            [{"request_range": {"key": key}}],
        )
        if ok:
            self.view.slots[n] = self.me
            return self.me
        ranged = (responses[0].get("response_range") or {}) if responses else {}
        kvs = ranged.get("kvs") or [{}]
        return unb64(kvs[0].get("value", "")).decode() or "?"

    async def give(self, connected: bool) -> None:
        """Give the slot back (POST /admin/ready); etcd down: the next session does it."""
        self.wanted = False
        slot, self.held = self.held, None
        if slot is not None and connected:
            with contextlib.suppress(EtcdError):
                await self._release(slot)

    async def _release(self, n: int) -> None:
        key = b64(self.key(n))
        await self.etcd.txn(
            [{"key": key, "target": "VALUE", "result": "EQUAL", "value": b64(self.me)}],
            [{"request_delete_range": {"key": key}}],
            [],
        )
        self.view.slots.pop(n, None)

    async def reconcile(self, lease: int) -> None:
        """At a session's start (the view just read): take the slot back if we still drain
        through one (the old lease may have expired with it), free one we no longer want."""
        self.held = None
        for n, holder in list(self.view.slots.items()):
            if holder == self.me and not self.wanted:
                await self._release(n)
            elif holder == self.me:
                self.held = n
        if self.wanted and self.held is None:
            taken = await self.take(lease)
            if taken.slot is None:
                log.warning(
                    "fleet: still draining, but no slot is free (held by %s)", taken.holders
                )
                self.wanted = True
