"""Hypothesis on the config loader: any YAML text gives Settings or a clean ConfigError, one
`file:line: path: why` line per error, never another exception (so never a traceback).

Texts come from three places: arbitrary text, YAML-ish documents built from the config's
own vocabulary, and mutations of the shipped configs (config/, tests/data/config/, the
packaged default). Examples are derandomized so the suite is deterministic; set
HEALTHD_FUZZ_EXAMPLES and HEALTHD_FUZZ_RANDOM=1 for a longer, exploratory run.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from healthd.config import DEFAULT_CONFIG, Settings, parse_settings
from healthd.errors import ConfigError

ROOT = Path(__file__).parent.parent
SEEDS = sorted(
    [DEFAULT_CONFIG, *ROOT.glob("config/**/*.yaml"), *ROOT.glob("tests/data/config/*.yaml")]
)
TEXTS = [p.read_text() for p in SEEDS]
FILENAME = "fuzz.yaml"
LINE = re.compile(r"fuzz\.yaml:([1-9][0-9]*): (.+)")
TOP = "the top level must be a mapping"
EXAMPLES = int(os.environ.get("HEALTHD_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a loaded 2-core machine makes per-example deadlines flaky
    derandomize=not os.environ.get("HEALTHD_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def assert_clean(text: str) -> Settings | None:
    """Settings, or a ConfigError whose every line is `fuzz.yaml:N: path: why`."""
    try:
        return parse_settings(text, FILENAME)
    except ConfigError as exc:
        message = str(exc)
    lines = message.split("\n")
    assert lines, "an empty error message"
    last = max(1, len(text.splitlines()) + 1)  # splitlines breaks on more than YAML does
    for line in lines:
        match = LINE.fullmatch(line)
        assert match, f"not `{FILENAME}:N: path: why`: {line!r}"
        assert int(match.group(1)) <= last, f"line {match.group(1)} of {last}: {line!r}"
        rest = match.group(2)
        assert rest == TOP or re.fullmatch(r".*: \S.*", rest), line
        assert "\r" not in line
        assert "Traceback" not in line
    return None


# --- strategies --------------------------------------------------------------------------

KEYS = [
    "server", "listen", "admin_listen", "token", "show_details", "status_codes", "deadline",
    "default", "max", "margin", "offset", "defaults", "interval", "timeout", "failure_threshold",
    "success_threshold", "shutdown", "drain_delay", "grace", "groups", "readiness", "liveness",
    "include", "exclude", "tracing", "sample_passing", "logging", "format", "level", "checks",
    "name", "kind", "critical", "mode", "max_age", "warn_after", "address", "url", "dsn", "host",
    "path", "ttl", "command", "healthy", "unhealthy",
]  # fmt: skip
KINDS = ["tcp", "loop", "http", "dns", "exec", "disk", "remote", "heartbeat", "postgres", "redis"]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["250ms", "2s", "1m", "0s", "1h30m", "10", "-1s", "1.5s", "ms", "", " "]),
    st.sampled_from([*KINDS, "always", "never", "when_authorized", "json", "debug", "*"]),
    st.sampled_from(["127.0.0.1:9", "[::1]:80", ":0", "h:99999", "${HOME}", "${NOPE:-x}", "${X"]),
    st.text(max_size=12),
)
ODD_KEYS = st.text(max_size=6)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), ODD_KEYS), inner, max_size=5),
    ),
    max_leaves=25,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A config-shaped tree (often with a `checks` list), dumped as YAML in block or flow style."""
    data = draw(DATA)
    if draw(st.booleans()):
        checks = draw(st.lists(st.dictionaries(st.sampled_from(KEYS), SCALARS), max_size=3))
        for check in checks:
            check.setdefault("kind", draw(st.sampled_from(KINDS)))
        data = {**(data if isinstance(data, dict) else {}), "checks": checks}
    yaml = YAML(typ="safe")
    yaml.default_flow_style = draw(st.sampled_from([None, True, False]))
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


FRAGMENTS = [
    "- ", ": ", "  ", "\n", "\t", "&a ", "*a", "!!str ", "!!int ", "!foo ", "? ", "{", "}",
    "[", "]", ",", "'", '"', "#", "---\n", "...\n", "%YAML 1.2\n", "|\n", ">-\n", "\\", "kind",
    "checks", "name", "loop", "tcp", "${A}", "~", "null", "1s", "\u00e9", "\ufeff",
]  # fmt: skip


@st.composite
def mutants(draw: st.DrawFn) -> str:
    """A shipped config with a few lines deleted, duplicated, swapped, re-indented or cut."""
    lines = draw(st.sampled_from(TEXTS)).splitlines(keepends=True) or ["\n"]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "swap", "indent", "dedent", "cut", "insert"]))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = draw(st.sampled_from([" ", "  ", "\t", "    "])) + lines[i]
        elif op == "dedent":
            lines[i] = lines[i].lstrip(" ")
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from(FRAGMENTS)) + lines[i][at:]
    return "".join(lines)


# --- properties --------------------------------------------------------------------------


@FUZZ
@given(st.text(max_size=200))
def test_any_text(text: str) -> None:
    """Arbitrary text: Settings or a clean error."""
    assert_clean(text)


@FUZZ
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join))
def test_yaml_fragments(text: str) -> None:
    """Sequences of YAML's own punctuation (anchors, tags, flow, block scalars, tabs)."""
    assert_clean(text)


@FUZZ
@given(documents())
def test_config_shaped_documents(text: str) -> None:
    """Well-formed YAML in the config's vocabulary, with values of every type."""
    assert_clean(text)


@FUZZ
@given(mutants())
def test_mutated_shipped_configs(text: str) -> None:
    """Small edits to the shipped configs, as a person editing one would make."""
    assert_clean(text)


def test_the_seeds_are_there() -> None:
    """The mutations start from real files: the default, config/ and the invalid table."""
    assert len(SEEDS) >= 20
    assert assert_clean(TEXTS[SEEDS.index(DEFAULT_CONFIG)]) is not None


@pytest.mark.parametrize(
    "message",
    [
        "fuzz.yaml: checks: no line",
        "fuzz.yaml:0: checks: line zero",
        "fuzz.yaml:9: checks: past the end",
        "fuzz.yaml:1: server.a\nb: unknown key",
        "fuzz.yaml:1: no path",
        "",
    ],
)
def test_the_property_can_fail(monkeypatch: pytest.MonkeyPatch, message: str) -> None:
    """assert_clean rejects a message without a line, past the end, over two lines, or bare."""

    def parse(text: str, filename: str) -> Settings:
        raise ConfigError(message)

    monkeypatch.setattr(sys.modules[__name__], "parse_settings", parse)
    with pytest.raises(AssertionError):
        assert_clean("checks: []\n")


# --- known crashes and nasty files, also through `healthd validate` ----------------------

NASTY = {
    "tab-indent": "checks:\n\t- {name: a, kind: loop}\n",
    "duplicate-key": "checks: []\nchecks: []\n",
    "alias-loop": "a: &a [*a]\n",
    "laughs": "a: &a [1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b]\n",
    "two-documents": "checks: []\n---\nchecks: []\n",
}
# Inputs that once crashed the loader with a traceback, each kept as a regression test.
CRASHES = {
    "control-character": "checks: []\x01\n",  # ReaderError
    "nul": "server: {token: a\x00b}\n",  # ReaderError
    "binary-garbage": "\x89PNG\r\n\x1a\n\x00\x00",  # ReaderError
    "deep-nesting": "a: " + "[" * 400 + "]" * 400 + "\n",  # RecursionError
    "huge-integer": "defaults: {failure_threshold: " + "9" * 5000 + "}\n",  # ValueError
    "merge-key-top": "x: &b {a: 1}\n<<: *b\n",  # KeyError in _locate
    "merge-key-check": "b: &b {kind: loop, bogus: 1}\nchecks: [{<<: *b, name: x}]\n",
    "newline-in-key": 'server: {"a\\nb": 1}\n',  # the error spans two lines
    "python-tag": "checks: !!python/object/apply:os.system ['true']\n",  # TypeError in _locate
    "bad-int-tag": "defaults: {failure_threshold: !!int x}\n",  # ValueError
    "empty-int-tag": "defaults:\n  failure_threshold: !!int\n",  # IndexError
    "bad-bool-tag": "checks: [{kind: loop, name: a, critical: !!bool x}]\n",  # KeyError
    "reused-anchor": "a: &x 1\nb: &x 2\n",  # a 7-line warning on stderr; an error under -W error
}


@pytest.mark.parametrize("text", list(NASTY.values()), ids=list(NASTY))
def test_nasty_files_give_clean_errors(text: str) -> None:
    assert_clean(text)


@pytest.mark.parametrize("text", list(CRASHES.values()), ids=list(CRASHES))
def test_former_crashes_give_clean_errors(text: str) -> None:
    """Control characters, deep nesting, huge integers, merge keys, tags, reused anchors."""
    assert_clean(text)


CLI = {
    **{k: NASTY[k] for k in ("tab-indent", "two-documents")},
    **{k: CRASHES[k] for k in ("binary-garbage", "huge-integer", "merge-key-top", "bad-bool-tag")},
}


@pytest.mark.parametrize("text", list(CLI.values()), ids=list(CLI))
def test_validate_exits_2_without_a_traceback(tmp_path: Path, text: str) -> None:
    """`healthd validate -c FILE` on a nasty file: exit 2, every line located, no traceback."""
    path = tmp_path / "nasty.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    done = subprocess.run(
        [sys.executable, "-m", "healthd", "validate", "-c", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    assert all(line.startswith("healthd: ") for line in done.stderr.splitlines()), done.stderr
    lines = [line.removeprefix("healthd: ") for line in done.stderr.splitlines()]
    assert lines
    assert all(line.startswith(f"{path}:") for line in lines), done.stderr
