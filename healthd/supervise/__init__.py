"""Shell 2 (reference §16): `healthd run -c FILE -- CMD ARGS…` runs the app as healthd's child.

    SIGTERM/SIGINT   draining at once (readiness 503, liveness 200); the child keeps serving
    drain_delay      then `shutdown.stop_signal` to the child's process group
    stop_timeout     for the child to exit; then SIGKILL to the group
    listeners close  only after the child is gone; probes in flight get `grace`; exit line
    second signal    cuts the current wait short (the stop signal, or SIGKILL, at once)
    child ends       on its own: healthd stops at once and exits with its code
    other signals    forwarded to the child's group (SIGHUP also reloads, SIGUSR1 also dumps)

child.py starts and signals the child, reaper.py reaps orphans without stealing a status,
exitline.py turns how the child ended into the exit code and the exit line.
"""

from healthd.supervise.child import resolve
from healthd.supervise.supervisor import Supervisor

__all__ = ["Supervisor", "resolve"]
