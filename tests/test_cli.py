"""The command line: validate, schema, check (Nagios exit codes) and probe, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import Healthd

ROOT = Path(__file__).parent.parent
INVALID = ROOT / "tests" / "data" / "config" / "invalid-timeout-not-below-interval.yaml"


def healthd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "healthd", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "healthd.yaml"
    path.write_text(text)
    return str(path)


def test_validate_bad_file_exits_2_with_one_line() -> None:
    """`healthd validate` on a bad file: exit 2, one line naming file:line and path."""
    done = healthd("validate", "-c", str(INVALID))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"healthd: {INVALID}:5: checks[0].timeout: must be shorter than interval"
    ]
    assert "Traceback" not in done.stderr


def test_validate_good_file() -> None:
    """`healthd validate` on the example config exits 0."""
    done = healthd("validate", "-c", str(ROOT / "config" / "healthd.yaml"))
    assert done.returncode == 0, done.stderr


def test_validate_missing_file() -> None:
    """A missing file is a one-line error, exit 2."""
    done = healthd("validate", "-c", "/nonexistent/healthd.yaml")
    assert done.returncode == 2
    assert "cannot read" in done.stderr


def test_schema_prints_json_schema() -> None:
    """`healthd schema` prints the JSON Schema of the config."""
    done = healthd("schema")
    schema = json.loads(done.stdout)
    assert "checks" in schema["properties"]


@pytest.mark.parametrize(
    ("checks", "code", "state"),
    [
        ([("a", "loop", True)], 0, "healthy"),
        ([("a", "loop", True), ("b", "refused", False)], 1, "degraded"),
        ([("a", "loop", True), ("b", "refused", True)], 2, "unhealthy"),
    ],
)
def test_check_exit_codes(
    tmp_path: Path, refused_port: int, checks: list[tuple[str, str, bool]], code: int, state: str
) -> None:
    """`healthd check` exits 0 healthy, 1 degraded, 2 unhealthy (Nagios)."""
    lines = ["checks:"]
    for name, what, critical in checks:
        lines.append(f"  - name: {name}\n    critical: {str(critical).lower()}")
        if what == "loop":
            lines.append("    kind: loop")
        else:
            lines.append(f"    kind: tcp\n    address: '127.0.0.1:{refused_port}'")
    done = healthd("check", "-c", write(tmp_path, "\n".join(lines)), "--json")
    assert done.returncode == code, done.stderr
    assert json.loads(done.stdout)["status"] == state


def test_check_unknown_exit_3(tmp_path: Path) -> None:
    """A config healthd cannot use makes `healthd check` answer UNKNOWN (3), as Nagios expects."""
    done = healthd("check", "-c", str(INVALID))
    assert done.returncode == 3
    assert "checks[0].timeout" in done.stderr


def test_check_verbose_text(tmp_path: Path, refused_port: int) -> None:
    """Without --json, `healthd check` prints the verbose lines."""
    cfg = f"checks:\n  - {{name: db, kind: tcp, address: '127.0.0.1:{refused_port}'}}\n"
    done = healthd("check", "-c", write(tmp_path, cfg), "--timeout", "500ms")
    assert done.returncode == 2
    assert "[-]db failed: connection refused" in done.stdout.splitlines()


def test_check_bad_timeout(tmp_path: Path) -> None:
    """A malformed --timeout is a one-line usage error (UNKNOWN, 3)."""
    done = healthd("check", "--timeout", "soon")
    assert done.returncode == 3
    assert "--timeout" in done.stderr


@pytest.mark.slow
async def test_probe_command(tmp_path: Path, refused_port: int) -> None:
    """`healthd probe` exits 0 on 2xx, 1 on 503 and on a refused port."""
    config = "server: {listen: '127.0.0.1:{port}'}\nchecks:\n"
    config += f"  - {{name: db, kind: tcp, address: '127.0.0.1:{refused_port}'}}\n"
    async with Healthd(tmp_path, config) as daemon:
        assert healthd("probe", daemon.url("/livez")).returncode == 0
        assert healthd("probe", daemon.url("/readyz?fresh=1")).returncode == 1
    assert healthd("probe", f"http://127.0.0.1:{refused_port}/livez").returncode == 1
    assert healthd("probe", "ftp://x/").returncode == 2
