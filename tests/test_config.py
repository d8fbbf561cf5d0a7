"""Config validation: every invalid file under tests/data/config names file:line: path: why."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from healthd.checks import KINDS
from healthd.checks.tcp import TcpSpec
from healthd.config import DEFAULT_CONFIG, Settings, load_settings, parse_settings
from healthd.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"
INVALID = sorted(DATA.glob("invalid-*.yaml"))
ROOT = Path(__file__).parent.parent


def expected(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    match = re.match(r"# expect: (.*)", first)
    assert match, f"{path.name}: first line must be '# expect: <message>'"
    return match.group(1)


def test_there_are_enough_rules() -> None:
    """The table covers at least 15 distinct rules."""
    assert len(INVALID) >= 15


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_config(path: Path) -> None:
    """Each invalid file fails with its one-line message naming file:line and the path."""
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    want = f"{path}{expected(path)}"
    assert any(line.startswith(want) for line in lines), f"{lines!r} lacks {want!r}"
    assert "Traceback" not in str(info.value)


def test_env_expansion_with_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} comes from the environment, ${VAR:-x} falls back to x."""
    monkeypatch.setenv("HEALTHD_TEST_HOST", "db.internal")
    monkeypatch.delenv("HEALTHD_TEST_PORT", raising=False)
    address = "${HEALTHD_TEST_HOST}:${HEALTHD_TEST_PORT:-5432}"
    text = f'checks:\n  - {{name: a, kind: tcp, address: "{address}"}}'
    check = parse_settings(text).checks[0]
    assert isinstance(check, TcpSpec)
    assert check.address == "db.internal:5432"


def test_expanded_values_are_not_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable's value is a plain string: YAML syntax inside it is not interpreted."""
    monkeypatch.setenv("HEALTHD_TEST_TOKEN", "a: b # not a comment")
    settings = parse_settings("server:\n  token: ${HEALTHD_TEST_TOKEN}\n")
    assert settings.server.token.get_secret_value() == "a: b # not a comment"
    assert "not a comment" not in repr(settings)


def test_defaults_fill_check_keys() -> None:
    """`defaults:` sets interval/timeout/thresholds for checks that do not."""
    text = "defaults: {interval: 30s, timeout: 3s, failure_threshold: 2}\nchecks:\n"
    text += "  - {name: a, kind: loop}\n  - {name: b, kind: loop, timeout: 1s}\n"
    a, b = parse_settings(text).checks
    assert (a.interval, a.timeout, a.failure_threshold) == (30.0, 3.0, 2)
    assert b.timeout == 1.0


def test_yaml_12_keeps_strings() -> None:
    """`on` stays a string (YAML 1.2), so check names like `on` are not booleans."""
    settings = parse_settings("checks:\n  - {name: on, kind: loop}\n")
    assert settings.checks[0].name == "on"


def test_groups() -> None:
    """Readiness takes every check unless told; liveness takes the loop checks by default."""
    text = "groups: {readiness: {exclude: [batch]}}\nchecks:\n  - {name: loop, kind: loop}\n"
    text += "  - {name: batch, kind: loop}\n"
    text += "  - {name: db, kind: tcp, address: 'h:1', critical: false}\n"
    settings = parse_settings(text)
    assert settings.members("readiness") == ["loop", "db"]
    assert settings.members("liveness") == ["loop", "batch"]
    assert settings.members("startup") == ["loop"]


def test_default_config_and_example_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The packaged default config and every shipped example load (with their secrets set)."""
    for name in ("PG_PASSWORD", "AMQP_PASSWORD"):
        monkeypatch.setenv(name, "from-a-secret")
    examples = sorted((ROOT / "config" / "examples").glob("*.yaml"))
    assert examples, "config/examples/ holds no example"
    for path in [DEFAULT_CONFIG, ROOT / "config" / "healthd.yaml", *examples]:
        assert load_settings(path).checks, f"{path}: no checks"


def test_every_kind_appears_in_the_example_config() -> None:
    """The union is the registry: kinds are unique and each is shown in config/healthd.yaml."""
    kinds = list(KINDS)
    assert len(kinds) == len(set(kinds))
    example = load_settings(ROOT / "config" / "healthd.yaml")
    assert set(kinds) <= {c.kind for c in example.checks}


def test_schema_is_current() -> None:
    """config/healthd.schema.json is what `healthd schema` prints (run `make schema`)."""
    import json

    on_disk = json.loads((ROOT / "config" / "healthd.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(Settings.model_json_schema())), "run `make schema`"


def test_a_kind_whose_extra_is_missing_names_the_pip_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A config using a kind whose driver is not installed fails with the install command."""
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # what the import system says when absent
    text = "checks:\n  - {name: db, kind: postgres, dsn: 'postgresql://db/app'}\n"
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "app.yaml")
    assert str(info.value) == (
        "app.yaml:2: checks[0]: check 'db' needs: pip install 'healthd[postgres]'"
        " (a source checkout: .venv/bin/pip install -e '.[postgres]')"
    )
