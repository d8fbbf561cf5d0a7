"""A child for `healthd run -- …` tests: records every signal it gets, then does as told.

    python tests/supervised_app.py RECORD [--on-stop exit:N|raise|ignore|kill:SIG] [--stop SIG]
        [--after S] [--exit-after S:N] [--orphans]

Each line of RECORD is `<wall time> <what>`: `started <pid> <pgid>`, `got SIGUSR2`, `exiting 3`.
On the stop signal (`--stop`, SIGTERM by default) it waits `--after` seconds, then:
`exit:N` exits with N, `raise` dies of that signal (as uvicorn does after a clean stop),
`ignore` keeps running, `kill:SIG` dies of SIG. `--exit-after S:N` exits with N after S
seconds on its own. `--orphans` keeps leaving orphans behind: every 20 ms a process whose
own child outlives it (then exits), so the orphan's zombie becomes healthd's to reap.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import threading
import time

CAUGHT = [
    s for s in signal.valid_signals()
    if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGSEGV, signal.SIGBUS,
                 signal.SIGFPE, signal.SIGILL, signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS)
]  # fmt: skip


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("record")
    parser.add_argument("--on-stop", default="exit:0")
    parser.add_argument("--stop", default="SIGTERM")
    parser.add_argument("--after", type=float, default=0.0)
    parser.add_argument("--exit-after", default="")
    parser.add_argument("--orphans", action="store_true")
    args = parser.parse_args()
    out = open(args.record, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    lock = threading.Lock()

    def note(what: str) -> None:
        with lock:
            out.write(f"{time.time():.6f} {what}\n")
            out.flush()
            os.fsync(out.fileno())

    stop = signal.Signals[args.stop]
    due: list[float] = []  # when to act on the stop signal (in the main thread: signal calls)
    wake = threading.Event()

    def handler(signum: int, _: object) -> None:
        note(f"got {name(signum)}")
        if signum == stop and not due:
            due.append(time.monotonic() + args.after)
            wake.set()

    def on_stop() -> None:
        how, _, value = args.on_stop.partition(":")
        if how == "exit":
            note(f"exiting {value}")
            os._exit(int(value))
        if how in ("raise", "kill"):
            sig = stop if how == "raise" else signal.Signals[value]
            note(f"dying of {sig.name}")
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGQUIT: no core dump to write
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        due[0] = float("inf")  # ignore: keep running

    for sig in CAUGHT:
        signal.signal(sig, handler)
    note(f"started {os.getpid()} {os.getpgrp()}")
    if args.exit_after:
        seconds, _, code = args.exit_after.partition(":")

        def leave() -> None:
            note(f"exiting {code}")
            os._exit(int(code))

        threading.Timer(float(seconds), leave).start()
    while True:
        if due and time.monotonic() >= due[0]:
            on_stop()
        if args.orphans:  # `sh` starts a sleep in the background and exits: the sleep is orphaned
            subprocess.run(["sh", "-c", "sleep 0.05 &"], check=False)
            time.sleep(0.02)
        else:
            wake.wait(min(3600.0, max(0.0, due[0] - time.monotonic())) if due else 3600)
            wake.clear()


if __name__ == "__main__":
    main()
