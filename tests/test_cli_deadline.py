"""`healthd check --timeout`: the budget is the command's, so the checks get it minus the
margin (the margin is room to print the answer, as a probe's is to send it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import servers

CONFIG = """
deadline: {default: 2s, margin: 100ms}
checks:
  - {name: hung, kind: tcp, address: "127.0.0.1:PORT", timeout: 5s, interval: 10s}
"""


def test_check_timeout_keeps_the_margin(tmp_path: Path) -> None:
    """--timeout 500ms with a 100 ms margin: a hung check is cut at 400 ms (not at 500, not
    early), and says so; the exit code is Nagios CRITICAL."""
    with servers.blackhole() as port:
        path = tmp_path / "healthd.yaml"
        path.write_text(CONFIG.replace("PORT", str(port)))
        done = subprocess.run(
            [sys.executable, "-m", "healthd", "check", "-c", str(path), "--timeout", "500ms",
             "--json"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    body = json.loads(done.stdout)
    hung = body["checks"]["hung"]
    assert hung["status"] == "timeout"
    assert hung["message"] == "timeout after 400ms"
    assert 380 <= hung["duration_ms"] < 490, hung
