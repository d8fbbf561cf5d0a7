"""`grpc`: a pass means grpc.health.v1 `Check` answered SERVING.

grpcio's `grpc.aio`, one channel per run, closed on the way out (cancellation
included). The call carries the remaining budget as its deadline, so
`grpc-timeout` goes out and the server can give up when we do (reference §3).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from healthd.checks.base import Context, SpecBase
from healthd.checks.tcp import ADDRESS_PATTERN
from healthd.deadline import Deadline
from healthd.durations import human_duration
from healthd.errors import CheckError, CheckFailed, CheckTimeout
from healthd.model import Observation, Reason


class GrpcSpec(SpecBase):
    requires: ClassVar[tuple[str, ...]] = ("grpc", "grpc_health")
    imports: ClassVar[tuple[str, ...]] = ("grpc.aio", "grpc_health.v1.health_pb2_grpc")
    extra: ClassVar[str] = "grpc"

    kind: Literal["grpc"] = "grpc"
    example: ClassVar[dict[str, Any]] = {"target": "{grpc}"}
    target: str = Field(pattern=ADDRESS_PATTERN, description="host:port of the gRPC server")
    service: str = Field(default="", description='service name to ask about; "" = the server')
    tls: bool = False

    def build(self, context: Context | None = None) -> GrpcCheck:
        return GrpcCheck(self.target, self.service, self.tls)


class GrpcCheck:
    def __init__(self, target: str, service: str, tls: bool) -> None:
        self.target, self.service, self.tls = target, service, tls

    async def __call__(self, deadline: Deadline) -> Observation:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        budget = deadline.remaining()
        # ATTENTION: grpcio keeps a socket that is still connecting ~20 s after close(),
        # retrying it on its backoff: against a server that accepts and never answers,
        # one leaked per run. A first backoff no shorter than the run bounds that.
        options = [("grpc.min_reconnect_backoff_ms", max(1, math.ceil(budget * 1000)))]
        if self.tls:
            credentials = grpc.ssl_channel_credentials()
            channel = grpc.aio.secure_channel(self.target, credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(self.target, options=options)
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=self.service)
            try:
                answer = await stub.Check(request, timeout=budget)
            except grpc.aio.AioRpcError as exc:
                raise self._failure(exc, budget) from None
        finally:
            # ATTENTION: also on cancellation; close() cancels the call and frees the channel.
            await channel.close()
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            raise CheckFailed(Reason.UNHEALTHY, f"{self._subject()} is {status}")
        return Observation(message=f"{self._subject()} is SERVING")

    def _subject(self) -> str:
        return f"service {self.service!r}" if self.service else f"server {self.target}"

    def _failure(self, exc: Any, budget: float) -> CheckError:
        import grpc

        code: grpc.StatusCode = exc.code()
        details = (exc.details() or "").splitlines()[0][:200] if exc.details() else ""
        text = f"{code.name}: {details}" if details else code.name
        lowered = details.lower()
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return CheckTimeout(f"deadline of {human_duration(budget)} exceeded")
        if code is grpc.StatusCode.UNAVAILABLE:
            if "dns" in lowered or "resolve" in lowered:
                return CheckFailed(Reason.DNS, f"dns: {text}")
            if "ssl" in lowered or "tls" in lowered or "handshake" in lowered:
                return CheckFailed(Reason.TLS, f"tls: {text}")
            return CheckFailed(Reason.REFUSED, text)
        if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            return CheckFailed(Reason.AUTH_FAILED, text)
        if code is grpc.StatusCode.NOT_FOUND:  # how Check says SERVICE_UNKNOWN
            return CheckFailed(Reason.UNHEALTHY, f"{self._subject()} is unknown ({text})")
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return CheckFailed(Reason.PROTOCOL, f"no grpc.health.v1 service ({text})")
        return CheckFailed(Reason.UNHEALTHY, text)
