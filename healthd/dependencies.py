"""Pure: `depends_on` (reference §2, §13): the graph's checks, who blocks whom, skipped results.

While a parent is failing (fail, timeout, flapping, or skipped itself) its child is not
run: a skipped result is recorded instead, whose message names the root cause, e.g.
`skipped: depends on db (timeout)`. Down a chain (orders → api → db) the message is the
root's, carried from the skipped parent, so every level names `db`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from healthd.model import CheckResult, CheckState, Outcome, Reason, Status


class Node(Protocol):
    """What the graph needs of a check spec."""

    @property
    def name(self) -> str: ...

    @property
    def depends_on(self) -> list[str]: ...


def problems(nodes: Sequence[Node], known: Iterable[str] = ()) -> list[str]:
    """One `checks[i].depends_on[j]: why` line per unknown name, and one per cycle."""
    index = {n.name: i for i, n in enumerate(nodes)}
    names = set(index) | set(known)
    out = []
    for i, node in enumerate(nodes):
        for j, parent in enumerate(node.depends_on):
            if parent not in names:
                out.append(f"checks[{i}].depends_on[{j}]: unknown check {parent!r}")
    edges = {n.name: [p for p in n.depends_on if p in index] for n in nodes}
    for cycle in _cycles(edges):
        i = index[cycle[0]]
        j = nodes[i].depends_on.index(cycle[1])
        out.append(f"checks[{i}].depends_on[{j}]: a cycle: {' → '.join(cycle)}")
    return out


def _cycles(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Each cycle once (as found by a depth-first walk), written from where it closes."""
    done: set[str] = set()
    found: list[list[str]] = []
    for start in edges:
        if start in done:
            continue
        path: list[str] = []
        on_path: dict[str, int] = {}
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            name, k = stack.pop()
            if k == 0:
                on_path[name] = len(path)
                path.append(name)
            parents = edges[name]
            if k < len(parents):
                stack.append((name, k + 1))
                parent = parents[k]
                if parent in on_path:
                    found.append([*path[on_path[parent] :], parent])
                elif parent not in done:
                    stack.append((parent, 0))
            else:
                path.pop()
                del on_path[name]
                done.add(name)
    return found


def dependents(nodes: Iterable[Node]) -> dict[str, tuple[str, ...]]:
    """Parent name → the checks that depend on it (config order)."""
    out: dict[str, list[str]] = {}
    for node in nodes:
        for parent in node.depends_on:
            out.setdefault(parent, []).append(node.name)
    return {k: tuple(v) for k, v in out.items()}


def blocking(
    parents: Iterable[str], state: Callable[[str], CheckState | None]
) -> CheckState | None:
    """The first parent that is failing now (skipped counts), or None: the check may run.

    A parent with no result yet (`unknown`) does not block: nothing says it is down.
    """
    for name in parents:
        parent = state(name)
        if parent is not None and parent.status.failing:
            return parent
    return None


def cause(parent: CheckState) -> str:
    """`skipped: depends on db (timeout)`: the root cause, carried down a chain."""
    last = parent.last
    if parent.status is Status.SKIPPED and last is not None:
        return last.message  # the parent's own root cause
    if parent.flapping:
        why = Reason.FLAPPING.value
    elif last is not None:
        why = last.reason.value
    else:
        why = parent.status.value
    return f"skipped: depends on {parent.name} ({why})"


def skipped(
    name: str, kind: str, parent: CheckState, now: float, wall: float, timeout: float
) -> CheckResult:
    """The result recorded instead of a run while `parent` is failing (no attempt made)."""
    return CheckResult(
        name, kind, Outcome.FAIL, Reason.SKIPPED, cause(parent), 0.0, now, wall, timeout,
        attempts=0,
    )  # fmt: skip
