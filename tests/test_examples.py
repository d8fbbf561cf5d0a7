"""Every shipped config (config/*.yaml, config/examples/*.yaml) validates with the set-up its
own header documents (issue 21): the `# Validate:` command, run as written in an environment
without the file's variables, exits 0; the `# Extras:` line names every extra its kinds need."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from healthd.checks.dns import DnsSpec
from healthd.config import Settings, load_settings

ROOT = Path(__file__).parent.parent
SHIPPED = sorted([*ROOT.glob("config/*.yaml"), *ROOT.glob("config/examples/*.yaml")])
IDS = [str(p.relative_to(ROOT)) for p in SHIPPED]


def header(path: Path, key: str) -> str:
    """The `# Key: …` line of the file's opening comment."""
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith(f"# {key}: "):
            return line.removeprefix(f"# {key}: ")
    raise AssertionError(f"{path.name}: no '# {key}:' line in its header")


def needed_extras(settings: Settings) -> set[str]:
    """The extras the file's check kinds (and server) need to validate."""
    extras = {c.extra for c in settings.checks if c.requires}
    extras |= {"dns" for c in settings.checks if isinstance(c, DnsSpec) and c.needs_dnspython}
    return extras | ({"grpc"} if settings.server.grpc_listen else set())


def test_there_are_shipped_configs() -> None:
    """config/healthd.yaml and at least one example are found."""
    assert ROOT / "config" / "healthd.yaml" in SHIPPED
    assert any(p.parent.name == "examples" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_the_documented_validate_command_passes(path: Path) -> None:
    """`# Validate: .venv/bin/healthd validate -c FILE`, from the checkout's root, with none
    of the file's `${VAR}`s set: exit 0, `FILE: ok (N checks)`."""
    argv = shlex.split(header(path, "Validate"))
    assert argv[:2] == [".venv/bin/healthd", "validate"], argv
    assert (ROOT / argv[argv.index("-c") + 1]).resolve() == path.resolve()
    names = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text()))
    env = {k: v for k, v in os.environ.items() if k not in names}
    done = subprocess.run(
        [sys.executable, "-m", "healthd", *argv[1:]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"\S+: ok \(\d+ checks\)\n", done.stdout), done.stdout


@pytest.mark.parametrize("path", SHIPPED, ids=IDS)
def test_the_extras_line_names_what_the_kinds_need(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`# Extras: .venv/bin/pip install -e '.[a,b]'` lists every extra the file needs (a base
    install fails validation without them), and nothing it does not."""
    for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", path.read_text()):
        monkeypatch.delenv(name, raising=False)
    line = header(path, "Extras")
    match = re.fullmatch(r"\.venv/bin/pip install -e '\.\[([a-z,]+)\]'", line)
    assert match, line
    assert set(match.group(1).split(",")) == needed_extras(load_settings(path))
