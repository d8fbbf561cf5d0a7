"""A small etcd v3 client over its JSON gateway (etcd 3.4: POST /v3/..., base64 keys and values).

Only what the fleet needs: leases (grant, keepalive, revoke), put, range, delete, a
transaction, and one watch stream. Every unary call runs under `asyncio.timeout` and raises
`EtcdError` (one line, never a credential) on any failure; the caller decides what a failure
means. A failed endpoint makes the next call try the next one.

    grant(ttl) → lease id    keepalive(id) → seconds left (0: the lease is gone)
    put(key, value, lease)   range(prefix) → (revision, {key: value})   delete(key)
    txn(compare, success, failure) → (succeeded, responses)   revoke(id)
    watch(prefix, after) → async iterator of [(kind, key, value)] batches

Numbers that are int64 in etcd's protobufs come back as JSON strings; they are converted here.
With `user:password` in the endpoint URL, the client authenticates (/v3/auth/authenticate)
and sends the token it gets; a token etcd no longer accepts is renewed once per call.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp
from pydantic import SecretStr

MAX_LINE = 4 << 20  # one watch response (a batch of events) at most


class EtcdError(Exception):
    """An etcd call failed: unreachable, timed out, refused, or an answer we cannot read."""


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def prefix_end(prefix: str) -> str:
    """The `range_end` that makes a range cover every key starting with `prefix`."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return b64(bytes(raw))


class Etcd:
    """One client; `open()` once, `close()` at the end. Not shared between event loops."""

    def __init__(
        self,
        endpoints: list[str],
        credentials: tuple[str, SecretStr] | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.endpoints = endpoints
        self.credentials = credentials
        self.timeout = timeout
        self.calls = 0  # requests sent (the benchmark reads it)
        self._index = 0
        self._token = ""
        self._session: aiohttp.ClientSession | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._index % len(self.endpoints)]

    async def open(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=8, force_close=False),
                timeout=aiohttp.ClientTimeout(total=None),
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- unary calls ------------------------------------------------------------------------------

    async def call(self, path: str, body: dict[str, Any], limit: float | None = None) -> Any:
        """POST `body` to /v3/`path`; the decoded answer, or EtcdError."""
        for attempt in range(2):
            status, data = await self._post(path, body, limit or self.timeout)
            if status == 401 and self.credentials is not None and attempt == 0:
                self._token = ""  # expired or revoked token: authenticate again, once
                continue
            if status != 200:
                message = data.get("message") or data.get("error") if isinstance(data, dict) else ""
                raise EtcdError(f"etcd {path}: HTTP {status}: {str(message or '')[:200]}")
            return data
        raise EtcdError(f"etcd {path}: authentication refused")

    async def _post(self, path: str, body: dict[str, Any], limit: float) -> tuple[int, Any]:
        if self._session is None:
            await self.open()
        assert self._session is not None
        endpoint = self.endpoint
        try:
            async with asyncio.timeout(limit):
                headers = await self._headers(endpoint)
                self.calls += 1
                async with self._session.post(
                    f"{endpoint}/v3/{path}", json=body, headers=headers
                ) as response:
                    raw = await response.read()
                    status = response.status
        except TimeoutError:
            self._index += 1
            raise EtcdError(f"etcd {path}: no answer from {endpoint} within {limit:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            self._index += 1
            raise EtcdError(f"etcd {path}: {endpoint}: {type(exc).__name__}") from None
        try:
            return status, json.loads(raw) if raw else {}
        except ValueError:
            raise EtcdError(f"etcd {path}: HTTP {status}: not JSON") from None

    async def _headers(self, endpoint: str) -> dict[str, str]:
        if self.credentials is None:
            return {}
        if not self._token:
            assert self._session is not None
            user, password = self.credentials
            body = {"name": user, "password": password.get_secret_value()}
            self.calls += 1
            async with self._session.post(f"{endpoint}/v3/auth/authenticate", json=body) as answer:
                data = await answer.json(content_type=None)
                if answer.status != 200 or not isinstance(data, dict) or "token" not in data:
                    raise EtcdError(f"etcd auth: HTTP {answer.status}: authentication failed")
                self._token = str(data["token"])
        return {"Authorization": self._token}

    async def grant(self, ttl: int) -> int:
        data = await self.call("lease/grant", {"TTL": ttl})
        return int(data["ID"])

    async def keepalive(self, lease: int) -> int:
        """Seconds left on the lease after renewing it; 0 when etcd no longer has it."""
        data = await self.call("lease/keepalive", {"ID": str(lease)})
        return int((data.get("result") or {}).get("TTL", 0))

    async def revoke(self, lease: int, limit: float | None = None) -> None:
        await self.call("lease/revoke", {"ID": str(lease)}, limit)

    async def put(self, key: str, value: str, lease: int = 0) -> int:
        data = await self.call(
            "kv/put", {"key": b64(key), "value": b64(value), "lease": str(lease)}
        )
        return int(data.get("header", {}).get("revision", 0))

    async def range(self, prefix: str) -> tuple[int, dict[str, str]]:
        """(revision, {key: value}) of every key under `prefix`."""
        data = await self.call("kv/range", {"key": b64(prefix), "range_end": prefix_end(prefix)})
        kvs = {
            unb64(kv["key"]).decode(): unb64(kv.get("value", "")).decode()
            for kv in data.get("kvs", [])
        }
        return int(data.get("header", {}).get("revision", 0)), kvs

    async def delete(self, key: str) -> None:
        await self.call("kv/deleterange", {"key": b64(key)})

    async def txn(
        self,
        compare: list[dict[str, Any]],
        success: list[dict[str, Any]],
        failure: list[dict[str, Any]],
    ) -> tuple[bool, list[Any]]:
        data = await self.call(
            "kv/txn", {"compare": compare, "success": success, "failure": failure}
        )
        return bool(data.get("succeeded", False)), list(data.get("responses", []))

    # --- the watch stream -------------------------------------------------------------------------

    async def watch(self, prefix: str, after: int) -> AsyncGenerator[list[tuple[str, str, str]]]:
        """Batches of (`put`|`delete`, key, value) under `prefix` after revision `after`, as
        they happen. The stream has no timeout of its own (it may be idle for hours): the
        caller watches the connection with its keep-alives and cancels this on trouble."""
        if self._session is None:
            await self.open()
        assert self._session is not None
        endpoint = self.endpoint
        create = {
            "key": b64(prefix),
            "range_end": prefix_end(prefix),
            "start_revision": str(after + 1),
        }
        try:
            async with asyncio.timeout(self.timeout):
                headers = await self._headers(endpoint)
                self.calls += 1
                response = await self._session.post(
                    f"{endpoint}/v3/watch", json={"create_request": create}, headers=headers
                )
        except TimeoutError:
            self._index += 1
            raise EtcdError(
                f"etcd watch: no answer from {endpoint} within {self.timeout:g}s"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            self._index += 1
            raise EtcdError(f"etcd watch: {endpoint}: {type(exc).__name__}") from None
        async with response:
            if response.status != 200:
                raise EtcdError(f"etcd watch: HTTP {response.status}")
            try:
                while True:
                    line = await response.content.readline()
                    if not line:
                        raise EtcdError("etcd watch: the stream ended")
                    if len(line) > MAX_LINE:
                        raise EtcdError("etcd watch: a response too large")
                    yield _events(line)
            except (aiohttp.ClientError, OSError) as exc:
                self._index += 1
                raise EtcdError(f"etcd watch: {type(exc).__name__}") from None


def _events(line: bytes) -> list[tuple[str, str, str]]:
    try:
        data = json.loads(line)
    except ValueError:
        raise EtcdError("etcd watch: a line that is not JSON") from None
    if "error" in data:
        raise EtcdError(f"etcd watch: {str(data['error'].get('message', ''))[:200]}")
    result = data.get("result") or {}
    if result.get("canceled") or result.get("compact_revision"):
        raise EtcdError("etcd watch: cancelled by the server (compacted?)")
    out = []
    for event in result.get("events", []):
        kv = event.get("kv", {})
        kind = "delete" if event.get("type") == "DELETE" else "put"
        key = unb64(kv.get("key", "")).decode()
        out.append((kind, key, unb64(kv.get("value", "")).decode()))
    return out
