"""A screenshot of /status: a real `healthd run` with checks in mixed states, photographed
by headless chromium (light and dark). Writes bench/results/status.png and status-dark.png.

The daemon checks things this script serves: an HTTP endpoint that is now and then slow
(amber cells: `warn_after`), a port that stays up, a port that goes away twice (a red
stretch, and a `depends_on` child skipped meanwhile), a port that never answers (timeouts)
and a Nagios plugin that warns. Runs are 200 ms apart, so the strips fill in ~15 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import RESULTS, free_port, wait_listening

from tests.servers import blackhole

CONFIG = """
server: {{listen: "127.0.0.1:{port}", show_details: always}}
defaults: {{interval: 200ms, timeout: 150ms, flapping: off}}
shutdown: {{drain_delay: 0s, grace: 1s}}
history: 100
checks:
  - {{name: api, kind: http, url: "http://127.0.0.1:{web}/healthz", warn_after: 40ms}}
  - {{name: db, kind: tcp, address: "127.0.0.1:{db}"}}
  - {{name: cache, kind: tcp, address: "127.0.0.1:{cache}", critical: false}}
  - {{name: search, kind: tcp, address: "127.0.0.1:{db}", depends_on: [cache], critical: false}}
  - {{name: payments, kind: tcp, address: "127.0.0.1:{hung}", critical: false, timeout: 100ms}}
  - name: queue
    kind: exec
    critical: false
    command: [sh, -c, "echo 'queue depth 1240 above the soft limit of 1000'; exit 1"]
"""


async def slow_now_and_then(request: web.Request) -> web.Response:
    await asyncio.sleep(0.06 if random.random() < 0.12 else random.uniform(0.001, 0.01))
    return web.json_response({"status": "ok"})


async def listener(port: int) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)


async def main() -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("chromium not found (scripts/tools.sh installs it)")
    port, web_port, db, cache = (free_port() for _ in range(4))
    app = web.Application()
    app.router.add_get("/healthz", slow_now_and_then)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", web_port).start()
    db_server, cache_server = await listener(db), await listener(cache)
    held = contextlib.ExitStack()
    hung = held.enter_context(blackhole())  # a port whose connects hang
    folder = Path(tempfile.mkdtemp(prefix="healthd-status-"))
    config = folder / "healthd.yaml"
    config.write_text(CONFIG.format(port=port, web=web_port, db=db, cache=cache, hung=hung))
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "healthd", "run", "-c", str(config),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await asyncio.to_thread(wait_listening, port)
        started = time.monotonic()
        for at, up in ((5.0, False), (8.0, True), (12.5, False)):  # cache: down, up, down
            await asyncio.sleep(max(0.0, started + at - time.monotonic()))
            if up:
                cache_server = await listener(cache)
            else:
                cache_server.close()
                await cache_server.wait_closed()
        await asyncio.sleep(max(0.0, started + 16.0 - time.monotonic()))
        url = f"http://127.0.0.1:{port}/status"
        RESULTS.mkdir(exist_ok=True)
        for name, flags in (("status.png", []), ("status-dark.png", ["--force-dark-mode"])):
            shot = RESULTS / name
            argv = [
                "--headless", "--no-sandbox", "--hide-scrollbars", "--disable-gpu",
                f"--user-data-dir={folder / 'profile'}", *flags, "--window-size=1100,1250",
                f"--screenshot={shot}", url,
            ]  # fmt: skip
            # Not subprocess.run: this loop serves the endpoints the daemon checks meanwhile.
            browser = await asyncio.create_subprocess_exec(
                chromium, *argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            await asyncio.wait_for(browser.wait(), 60)
            print(f"wrote {shot} ({shot.stat().st_size // 1024} KB)")
    finally:
        daemon.terminate()
        await asyncio.wait_for(daemon.wait(), 10)
        db_server.close()
        cache_server.close()
        held.close()
        await runner.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
