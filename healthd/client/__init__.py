"""A client for applications that call a service healthd watches (reference §18).

`Watch(url, token=None)`: an async iterator over the healthd's `/watch` events that
resumes with `Last-Event-ID`, reconnects with capped, jittered exponential backoff, and
turns silence longer than twice the stream's keep-alive period into an `unknown` event.

`Gate(url, check=None)`: a circuit breaker fed by that state: `async with gate:` raises
`Unavailable(reason)` at once while the upstream is unhealthy, draining or unknown.

Errors: `ClientError` → `NotHealthd` (the URL is not a healthd `/watch`), `Unavailable`
(the gate is open). Needs nothing beyond aiohttp.
"""

from healthd.client.gate import Gate, GateState, Unavailable
from healthd.client.watch import ClientError, Event, NotHealthd, Watch

__all__ = ["ClientError", "Event", "Gate", "GateState", "NotHealthd", "Unavailable", "Watch"]
