"""A config file's text → a plain tree, and pydantic's errors → lines naming file:line.

The YAML is read with ruamel.yaml (YAML 1.2: `on`/`yes` stay strings) so every map key and
list item keeps its line; `${VAR}` / `${VAR:-default}` are expanded in a plain-Python copy,
and a validation error's location is followed back through the positioned tree. Every
problem becomes one line, `file:line: path: why` (config.py says which model validates).
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning
from ruamel.yaml.reader import ReaderError

from healthd.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def read(text: str, filename: str) -> tuple[CommentedMap, dict[str, Any]]:
    """The positioned YAML tree of `text` (a mapping) and its expanded plain copy;
    ConfigError with one line per problem."""
    root = _load(text, filename)
    if root is None:
        root = CommentedMap()
    if not isinstance(root, CommentedMap):
        raise ConfigError(f"{filename}:1: the top level must be a mapping")
    env_errors: list[str] = []
    data = _expand(root, "", env_errors)
    if env_errors:
        lines = []
        for err in env_errors:
            path, _, why = err.partition(": ")
            _, line = _locate(root, tuple(_split_path(path)))
            lines.append(_one_line(f"{filename}:{line or 1}: {path}: {why}"))
        raise ConfigError("\n".join(lines))
    return root, data


def invalid(
    exc: ValidationError, root: CommentedMap, filename: str, schema: dict[str, Any] | None = None
) -> ConfigError:
    """A validation error of the tree read from `root` as one line per problem; with the
    model's JSON `schema`, an unknown key also gets "did you mean `timeout`?"."""
    lines = []
    for error in exc.errors():
        loc, why = _message(error)
        if error["type"] == "extra_forbidden" and schema is not None and loc:
            why += _did_you_mean(str(loc[-1]), _known_keys(schema, loc[:-1]))
        path, line = _locate(root, loc)
        lines.append(_one_line(f"{filename}:{line or 1}: {path or '(top)'}: {why}"))
    return ConfigError("\n".join(dict.fromkeys(lines)))


def _expand(node: Any, path: str, errors: list[str]) -> Any:
    """A plain-Python copy of the YAML tree with `${VAR}` / `${VAR:-default}` expanded."""
    if isinstance(node, dict):
        return {str(k): _expand(v, _join(path, k), errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}[{i}]", errors) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    errors.append(f"{path}: environment variable {name} is not set")
                    return ""
                return default
            return value

        return _ENV.sub(sub, str(node))
    if isinstance(node, bool | int | float) or node is None:
        return node.__class__(node) if node is not None else None
    return node


def in_code(exc: ValidationError, data: Any, prefix: str = "") -> str:
    """pydantic's errors for settings built in code: one `path: why` line each, the path
    followed through `data` as `_locate` follows a file (no file, so no line)."""
    lines = []
    for error in exc.errors():
        loc, why = _message(error)
        node, path = data, prefix
        for part in loc:
            if isinstance(node, list) and isinstance(part, int) and part < len(node):
                node, path = node[part], f"{path}[{part}]"
            elif isinstance(node, dict) and part in node:
                node, path = node[part], _join(path, part)
            elif isinstance(node, dict) and part == node.get("kind"):
                continue  # the discriminator segment
            elif isinstance(part, str) and not part[:1].isupper() and "[" not in part:
                path = _join(path, part)
        lines.append(f"{path or 'settings'}: {why}")
    return "\n".join(lines)


def _did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean `{close[0]}`?)" if close else ""


def _known_keys(schema: dict[str, Any], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the JSON `schema` allows at `loc` (a pydantic error location, the
    discriminator segment included); [] where it cannot be followed."""
    defs = schema.get("$defs", {})

    def flat(node: Any, want: str) -> Any:
        """`node` with `$ref`s resolved and a union narrowed to its branch that has `want`."""
        while isinstance(node, dict) and "$ref" in node:
            node = defs.get(str(node["$ref"]).rsplit("/", 1)[-1], {})
        if isinstance(node, dict) and "discriminator" not in node:
            branches: list[Any] = node.get("anyOf") or node.get("oneOf") or []
            for branch in branches:
                narrowed = flat(branch, want)
                if want in narrowed:
                    return narrowed
        return node if isinstance(node, dict) else {}

    node: Any = schema
    for part in loc:
        if isinstance(part, int):
            node = flat(node, "items").get("items", {})
            continue
        mapping = flat(node, "discriminator").get("discriminator", {}).get("mapping", {})
        if part in mapping:
            node = {"$ref": mapping[part]}
        elif part[:1].isupper() or "[" in part:
            continue  # a union branch's name, as pydantic inserts it (`FlapSettings`)
        else:
            node = flat(node, "properties").get("properties", {}).get(part, {})
    return list(flat(node, "properties").get("properties", {}))


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _locate(root: Any, loc: tuple[int | str, ...]) -> tuple[str, int | None]:
    """Follow a pydantic error location through the YAML tree: (dotted path, 1-based line)."""
    node, path, line = root, "", None
    for part in loc:
        if isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = _line(node, part, line)
            node, path = node[part], f"{path}[{part}]"
        elif isinstance(node, CommentedMap) and part in node:
            line = _line(node, part, line)  # a key merged in by `<<:` has no position
            node, path = node[part], _join(path, part)
        elif isinstance(node, CommentedMap) and part == node.get("kind"):
            continue  # the discriminator segment pydantic inserts for tagged unions
        elif isinstance(part, str) and not part[:1].isupper() and "[" not in part:
            path = _join(path, part)  # a key that is missing from the file
        if line is None and isinstance(node, CommentedMap | CommentedSeq):
            line = None if node.lc.line is None else node.lc.line + 1
    return path, line


def _line(node: CommentedMap | CommentedSeq, part: int | str, line: int | None) -> int | None:
    """The 1-based line of `node[part]` from ruamel's positions; a tagged node may have none."""
    position = (node.lc.data or {}).get(part)
    return position[0] + 1 if position else line


def _message(error: Any) -> tuple[tuple[int | str, ...], str]:
    loc, kind, msg = tuple(error["loc"]), error["type"], error["msg"]
    if kind == "extra_forbidden":
        return loc, "unknown key"
    if kind == "missing":
        return loc, "required"
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return (
            *loc,
            "kind",
        ), f"unknown kind {ctx.get('tag')!r} (one of: {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        return (*loc, "kind"), "required (the check kind)"
    if kind in ("string_type", "string_pattern_mismatch") and _is_address(loc):
        given = error.get("input")
        shown = repr(given[:60] if isinstance(given, str) else given)
        return loc, f'expected host:port, e.g. "0.0.0.0:8099" (got {shown})'
    if kind == "value_error":
        msg = str(error.get("ctx", {}).get("error", msg))
        head, sep, rest = msg.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+", head):
            return (*loc, head), rest  # "timeout: must be …" names the key it is about
        if sep and re.fullmatch(r"[a-z_.\[\]0-9]+", head):
            return tuple(_split_path(head)), rest  # a full path from a cross-field check
    return loc, msg[0].lower() + msg[1:] if msg else kind


def _is_address(loc: tuple[int | str, ...]) -> bool:
    """A `host:port` key: `server.listen`, `admin_listen`, `grpc_listen`, a tcp `address`."""
    last = str(loc[-1]) if loc else ""
    return last.endswith("listen") or last in ("address", "target")


def _split_path(path: str) -> Iterator[int | str]:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        yield int(part[1:-1]) if part.startswith("[") else part


def _load(text: str, filename: str) -> Any:
    """The YAML tree of `text`; ConfigError, with a line, for anything the YAML reader rejects."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ReusedAnchorWarning)  # else 7 lines on stderr
            return YAML(typ="rt").load(text)
    except ReusedAnchorWarning as exc:  # the message ends with the second one's position
        lines = re.findall(r"line (\d+), column", str(exc))
        line = int(lines[-1]) if lines else 1
        anchor = re.search(r"anchor '([^']*)'", str(exc))
        name = anchor.group(1) if anchor else "?"
        raise ConfigError(
            f"{filename}:{line}: invalid YAML: anchor &{name:.40} defined twice"
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        why = exc.problem or exc.context or "cannot be parsed"
        raise ConfigError(f"{filename}:{line}: invalid YAML: {_one_line(why)}") from None
    except ReaderError as exc:  # a character YAML does not allow in a stream (NUL, C0, C1)
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{filename}:{line}: invalid YAML: character {exc.character!r} is not allowed"
        ) from None
    except (ValueError, TypeError, LookupError) as exc:
        # a core tag's constructor (`!!int x`, `!!int` alone, `!!bool x`), or int() of a
        # literal over 4300 digits: ruamel raises these bare, without a mark
        raise ConfigError(f"{filename}:1: invalid YAML: {_one_line(str(exc))[:200]}") from None


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")
