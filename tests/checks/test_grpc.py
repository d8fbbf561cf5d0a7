"""`grpc` against an in-process grpc.aio health server, and loopback fault listeners."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from healthd import runner
from healthd.checks.grpc import GrpcSpec
from healthd.deadline import Deadline
from healthd.model import CheckResult, Outcome, Reason

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def run(target: str, service: str = "", timeout: str = "2s") -> CheckResult:
    spec = GrpcSpec(name="api", kind="grpc", target=target, service=service, timeout=timeout)
    return await runner.run(spec, spec.build(), Deadline.after(5.0))


class Recording(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Answers SERVING after `delay` seconds, recording the deadline each call arrived with."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.remaining: list[float | None] = []
        self.cancelled = asyncio.Event()

    async def Check(self, request: Any, context: Any) -> Any:
        self.remaining.append(context.time_remaining())
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return health_pb2.HealthCheckResponse(status=SERVING)


class Refusing(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Rejects every call as UNAUTHENTICATED, like a server wanting a token."""

    async def Check(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token required")


async def serve(servicer: Any) -> tuple[Any, str]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


@pytest.fixture
async def health() -> AsyncIterator[tuple[health_aio.HealthServicer, str]]:
    """The stock grpc.aio HealthServicer on a free loopback port."""
    servicer = health_aio.HealthServicer()
    server, target = await serve(servicer)
    try:
        yield servicer, target
    finally:
        await server.stop(None)


async def test_serving_then_not_serving(health: tuple[health_aio.HealthServicer, str]) -> None:
    """SERVING passes; after the server flips to NOT_SERVING the check fails unhealthy."""
    servicer, target = health
    result = await run(target)
    assert result.outcome is Outcome.PASS, result.message
    assert result.message == f"server {target} is SERVING"
    await servicer.set("", NOT_SERVING)
    result = await run(target)
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert result.message.endswith("is NOT_SERVING")


async def test_named_service(health: tuple[health_aio.HealthServicer, str]) -> None:
    """`service` asks about one service: SERVING passes, unknown (NOT_FOUND) is unhealthy."""
    servicer, target = health
    await servicer.set("shop.Cart", SERVING)
    assert (await run(target, "shop.Cart")).outcome is Outcome.PASS
    result = await run(target, "shop.Nope")
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.UNHEALTHY)
    assert "'shop.Nope' is unknown" in result.message


async def test_sends_the_remaining_budget_as_call_deadline() -> None:
    """The call carries grpc-timeout: the server sees a deadline just under the budget."""
    servicer = Recording()
    server, target = await serve(servicer)
    try:
        result = await run(target, timeout="800ms")
    finally:
        await server.stop(None)
    assert result.outcome is Outcome.PASS, result.message
    [remaining] = servicer.remaining
    assert remaining is not None
    assert 0.5 < remaining <= 0.81  # grpc-timeout rounds up on the wire


async def test_hung_servicer_times_out_at_budget() -> None:
    """A server whose handler never answers in time → timeout at 300ms, not before."""
    server, target = await serve(Recording(delay=5.0))
    try:
        result = await run(target, timeout="300ms")
    finally:
        await server.stop(None)
    assert (result.outcome, result.reason) == (Outcome.TIMEOUT, Reason.TIMEOUT)
    assert 0.28 <= result.duration <= 0.6


async def test_cancelled_run_cancels_the_call() -> None:
    """Cancelling the check mid-call (the runner's deadline) cancels the RPC on the server too."""
    servicer = Recording(delay=5.0)
    server, target = await serve(servicer)
    check = GrpcSpec(name="api", kind="grpc", target=target).build()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await check(Deadline.after(5.0))
        async with asyncio.timeout(2.0):
            await servicer.cancelled.wait()
    finally:
        await server.stop(None)


async def test_unauthenticated_is_auth_failed() -> None:
    """UNAUTHENTICATED from the server → auth_failed, with the server's words."""
    server, target = await serve(Refusing())
    try:
        result = await run(target)
    finally:
        await server.stop(None)
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.AUTH_FAILED)
    assert result.message == "UNAUTHENTICATED: token required"


async def test_no_health_service_is_protocol() -> None:
    """A gRPC server without grpc.health.v1 (UNIMPLEMENTED) → protocol."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        result = await run(f"127.0.0.1:{port}")
    finally:
        await server.stop(None)
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.PROTOCOL)
    assert "UNIMPLEMENTED" in result.message


async def test_tls_to_an_untrusted_server_is_tls(certificate: tuple[Path, Path]) -> None:
    """tls: true against a server whose certificate nobody trusts fails as `tls`."""
    cert, key = certificate
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_aio.HealthServicer(), server)
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        spec = GrpcSpec(name="api", kind="grpc", target=f"127.0.0.1:{port}", tls=True)
        result = await runner.run(spec, spec.build(), Deadline.after(5.0))
    finally:
        await server.stop(None)
    assert (result.outcome, result.reason) == (Outcome.FAIL, Reason.TLS), result.message
