"""The module map in docs/architecture.md holds in code: imports run one way, no cycles.

Every ``import`` of a tailguard module is read from the source (function-level
imports included, since a lazy import is still a dependency), so a core module that
reaches up to a client, or two modules that need each other, fail here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tailguard"
#: Clients of the core: they may import the core, never the reverse.
CLIENTS = {"lab", "advise", "report", "project", "tracking", "config", "cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    mod = f"{base}.{node.module}" if node.module else base
                else:
                    mod = node.module or ""
                # `from pkg import submodule` depends on the submodule itself.
                targets = [
                    f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names
                ]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("tailguard"):
                    graph[name].add(t)
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


GRAPH = _graph()


def test_the_graph_is_read() -> None:
    assert "tailguard.ledger" in GRAPH["tailguard.loop"]
    assert len(GRAPH) > 40


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if _top(m) not in CLIENTS))
def test_core_never_imports_a_client(module: str) -> None:
    up = sorted(t for t in GRAPH[module] if _top(t) in CLIENTS)
    assert not up, f"{module} (core) imports client modules {up}"


def test_nothing_imports_the_cli() -> None:
    for module, targets in GRAPH.items():
        if _top(module) != "cli":
            assert not [t for t in targets if _top(t) == "cli"], module


def test_metrics_imports_only_errors_and_the_word_tokenizer() -> None:
    for module, targets in GRAPH.items():
        if _top(module) == "metrics":
            foreign = {_top(t) for t in targets} - {"metrics", "errors", "words"}
            assert not foreign, f"{module} imports {sorted(foreign)}"


def test_the_word_tokenizer_is_a_leaf() -> None:
    """``words`` is what a word is for the metrics and the gate: it imports nothing of ours."""
    assert not GRAPH["tailguard.words"]
    assert "tailguard.words" in GRAPH["tailguard.metrics.text"]
    assert "tailguard.words" in GRAPH["tailguard.gate.minhash"]


def test_advise_does_not_import_the_lab() -> None:
    assert "tailguard.advise.quality" in GRAPH
    for module, targets in GRAPH.items():
        if _top(module) == "advise":
            assert not [t for t in targets if _top(t) == "lab"], module


def test_no_import_cycles() -> None:
    """Tarjan's strongly connected components: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_ledger_package_imports_only_what_it_is_built_on() -> None:
    """The stores sit on records, readers, errors and limits: nothing that uses the ledger."""
    allowed = {"ledger", "errors", "limits", "readers", "records"}
    for module, targets in GRAPH.items():
        if _top(module) == "ledger":
            foreign = {_top(t) for t in targets} - allowed
            assert not foreign, f"{module} imports {sorted(foreign)}"


def test_records_reaches_into_the_ledger_only_for_its_scratch_database() -> None:
    """``records`` is below the ledger; its one way in is the scratch DuckDB, a leaf."""
    assert {t for t in GRAPH["tailguard.records"] if _top(t) == "ledger"} <= {
        "tailguard.ledger.scratch"
    }
    assert not GRAPH["tailguard.ledger.scratch"]


#: A call that runs SQL on a DuckDB connection or cursor, or imports DuckDB to open one
#: (pandas' ``DataFrame.query`` is not SQL, so ``.query(`` is left out).
_SQL_CALL = re.compile(r"\.(execute|executemany|sql)\(|^\s*(import|from) duckdb\b")


def test_sql_is_written_only_inside_the_ledger_package() -> None:
    """The schema stays the ledger's: the CLI, the lab, the gate and the loop ask its stores."""
    outside = [
        f"{path.relative_to(SRC.parent)}:{n}: {line.strip()}"
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).parts[0] != "ledger"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _SQL_CALL.search(line)
    ]
    assert not outside, "SQL outside tailguard/ledger/:\n" + "\n".join(outside)


#: The largest a module of ``src/`` may grow, and a class in it (lines, from ``def``/
#: ``class`` to its last line): past these, a module or class holds more than one job.
MODULE_LINES = 700
CLASS_LINES = 500


def _sizes(path: Path) -> tuple[int, list[tuple[str, int, int]]]:
    """A module's line count, and each class in it (nested ones too): name, line, length."""
    text = path.read_text(encoding="utf-8")
    classes = [
        (node.name, node.lineno, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef) and node.end_lineno is not None
    ]
    return len(text.splitlines()), classes


def test_no_module_or_class_outgrows_one_job() -> None:
    too_big = []
    for path in sorted(SRC.rglob("*.py")):
        where = path.relative_to(SRC.parent)
        lines, classes = _sizes(path)
        if lines > MODULE_LINES:
            too_big.append(f"{where}: {lines} lines (at most {MODULE_LINES})")
        too_big += [
            f"{where}:{line}: class {name} is {length} lines (at most {CLASS_LINES})"
            for name, line, length in classes
            if length > CLASS_LINES
        ]
    assert not too_big, "split these:\n" + "\n".join(too_big)


def test_the_size_check_counts_lines_and_classes(tmp_path: Path) -> None:
    """The limits see a long module and a long class, nested ones included."""
    body = "\n".join(f"        x{i} = {i}" for i in range(CLASS_LINES))
    path = tmp_path / "big.py"
    path.write_text(f"def f():\n    class Inner:\n{body}\n\n\npass\n", encoding="utf-8")
    lines, classes = _sizes(path)
    assert lines == CLASS_LINES + 5
    assert classes == [("Inner", 2, CLASS_LINES + 1)]
