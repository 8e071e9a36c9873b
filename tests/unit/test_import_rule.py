"""The import rule: who may import whom inside ``verticalize``, checked on every import statement.

Layers, lowest first; a module may import its own package and anything in a LOWER layer, never a higher one:

    0  shared, stage-neutral modules at the top of the package: errors, config, methods (the PEFT method
       registry, which config validates against), artifacts, text, encoding, pii, testsets, openai_client,
       json_reply, answering, rungs, ... (every top-level module or package not named below)
    1  models      support: base models (catalog, resolving, loading, conversion)
    2  plan        support: memory/time estimates and the route advisor (uses models)
    3  engine, batching, engine_api and the CPU engines (openvino_*, onnxruntime_*, engine_process: their worker
       processes): the one loaded model that generates (loads models); engine imports batching, both import
       engine_api (requests, results, the streaming helpers)
    4  the stages, in the order of the flow: ingest < kb < data < train < evaluate < export < serve
       (a stage imports only stages BEFORE it; a later or sibling stage never)
    5  pipeline, cli, __main__, the package __init__: may import everything

Support packages serve the training side: ``models`` and ``plan`` may be imported by train, evaluate, export
and serve, not by ingest, kb or data. Both the imports at the top of a module and those inside functions count
(a lazy import still couples the modules), and there must be no import cycle between modules or between
packages.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = "verticalize"

STAGES = ("ingest", "kb", "data", "train", "evaluate", "export", "serve")
SUPPORT_RANK = {"models": 1, "plan": 2}
RUNTIME = ("engine", "batching", "engine_api", "engine_process", "openvino_engine", "openvino_worker",
           "onnxruntime_engine", "onnxruntime_worker")
ENTRY = ("pipeline", "cli", "console", "__main__", PACKAGE)
SUPPORT_USERS = ("train", "evaluate", "export", "serve")

# Known violations that cannot be removed yet, each with its reason; empty now, and a new entry needs a reason
# and a plan to remove it.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}  # modules in one cycle: reason
ALLOWED_IMPORTS: dict[tuple[str, str], str] = {}  # (importer, imported module): reason
# Packages whose own imports are not checked yet, with the reason (none: keep it that way).
UNCHECKED_PACKAGES: dict[str, str] = {}


# --------------------------------------------------------------------------------------------- the graph
def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(module: str, is_package: bool, tree: ast.AST, known: set[str]) -> list[tuple[str, int]]:
    """(verticalize module, line) for every import statement anywhere in ``tree`` (functions included), except
    those under ``if TYPE_CHECKING:`` (annotations only, never executed)."""
    type_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                 for stmt in block.body for n in ast.walk(stmt)}
    out: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            out.extend((a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".") if is_package else module.split(".")[:-1]
                parent = parent[:len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for alias in node.names:  # "from pkg import submodule" imports the submodule
                full = f"{base}.{alias.name}"
                out.append((full if full in known else base, node.lineno))
    return [(m, line) for m, line in out if m == PACKAGE or m.startswith(PACKAGE + ".")]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def build_graph(src: Path = SRC) -> dict[str, list[tuple[str, int]]]:
    files = {module_name(p, src): p for p in (src / PACKAGE).rglob("*.py")}
    known = set(files)
    graph: dict[str, list[tuple[str, int]]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[module] = imported_modules(module, path.name == "__init__.py", tree, known)
    return graph


def unit_of(module: str) -> str:
    """The package a module belongs to (``data`` for verticalize.data.build) or the top-level module's name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


def rank_of(unit: str) -> tuple[int, int]:
    if unit in ENTRY:
        return (5, 0)
    if unit in STAGES:
        return (4, STAGES.index(unit))
    if unit in RUNTIME:
        return (3, 0)
    if unit in SUPPORT_RANK:
        return (SUPPORT_RANK[unit], 0)
    return (0, 0)


def checked(graph: dict[str, list[tuple[str, int]]]) -> dict[str, list[tuple[str, int]]]:
    return {m: imports for m, imports in graph.items() if unit_of(m) not in UNCHECKED_PACKAGES}


def rule_violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    problems = []
    for module, imports in sorted(checked(graph).items()):
        src_unit = unit_of(module)
        for target, line in imports:
            dst_unit = unit_of(target)
            if dst_unit == src_unit or (module, target) in ALLOWED_IMPORTS:
                continue
            src_rank, dst_rank = rank_of(src_unit), rank_of(dst_unit)
            why = None
            if dst_rank[0] == src_rank[0] == 4:
                if dst_rank[1] >= src_rank[1]:
                    why = f"the {dst_unit} stage comes after {src_unit} in the flow"
            elif dst_rank[0] > src_rank[0]:
                why = f"{dst_unit} is in a higher layer than {src_unit}"
            elif dst_unit in SUPPORT_RANK and src_unit in STAGES and src_unit not in SUPPORT_USERS:
                why = f"the support package {dst_unit} is for {', '.join(SUPPORT_USERS)}, not {src_unit}"
            if why:
                problems.append(f"{module} (line {line}) imports {target}: {why}")
    return problems


def strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative; components with more than one node or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    nodes = set(edges) | {w for ws in edges.values() for w in ws}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in edges.get(v, ()):
                        found.append(comp)
    return found


def cycles(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Import cycles between modules and between packages, except the allowed ones."""
    modules: dict[str, set[str]] = defaultdict(set)
    units: dict[str, set[str]] = defaultdict(set)
    for module, imports in checked(graph).items():
        for target, _ in imports:
            # A package's __init__ importing its own modules is not a cycle; only edges between other modules.
            if target != module and not module.startswith(target + "."):
                modules[module].add(target)
            if unit_of(target) != unit_of(module):
                units[unit_of(module)].add(unit_of(target))
    problems = []
    for comp in strongly_connected(modules):
        if not any(comp <= allowed for allowed in ALLOWED_CYCLES):
            problems.append("module cycle: " + " <-> ".join(sorted(comp)))
    allowed_units = [{unit_of(m) for m in allowed} for allowed in ALLOWED_CYCLES]
    for comp in strongly_connected(units):
        if not any(comp <= allowed for allowed in allowed_units):
            problems.append("package cycle: " + " <-> ".join(sorted(comp)))
    return problems


# --------------------------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int]]]:
    return build_graph()


def test_the_graph_is_read(graph):
    assert "verticalize.cli" in graph and "verticalize.data.build" in graph
    assert any(target == "verticalize.config" for target, _ in graph["verticalize.data.build"])


def test_no_import_goes_up_or_sideways(graph):
    problems = rule_violations(graph)
    assert not problems, ("imports against the layer rule (see this test's docstring):\n  "
                          + "\n  ".join(problems))


def test_no_import_cycle(graph):
    problems = cycles(graph)
    assert not problems, "import cycles:\n  " + "\n  ".join(problems)


def test_the_allow_list_holds_only_real_cycles(graph):
    """An allowed cycle that no longer exists must leave the list, so the list only shrinks."""
    modules: dict[str, set[str]] = defaultdict(set)
    for module, imports in graph.items():
        modules[module].update(t for t, _ in imports if t != module and not module.startswith(t + "."))
    present = [comp for comp in strongly_connected(modules)]
    stale = [sorted(a) for a in ALLOWED_CYCLES if not any(a & comp for comp in present)]
    assert not stale, f"allowed cycles that are gone, remove them from ALLOWED_CYCLES: {stale}"


def test_the_checks_catch_violations_on_a_synthetic_graph(tmp_path: Path):
    """The rule really fails: a small package with an upward import, a sibling-stage import and a cycle."""
    pkg = tmp_path / PACKAGE
    files = {
        "__init__.py": "",
        "text.py": "from verticalize.ingest import x\n",                       # shared -> stage: up
        "ingest/__init__.py": "x = 1\n",
        "ingest/read.py": "def f():\n    from verticalize.serve import app\n",  # earlier stage -> later, lazily
        "kb/__init__.py": "from verticalize.models import m\n",                # kb may not use the support package
        "models/__init__.py": "m = 1\n",
        "serve/__init__.py": "",
        "serve/app.py": "from . import other\n",
        "serve/other.py": "from verticalize.serve.app import y\n",           # module cycle inside serve
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    g = build_graph(tmp_path)
    problems = rule_violations(g)
    assert any(p.startswith("verticalize.text ") and "verticalize.ingest" in p for p in problems)
    assert any(p.startswith("verticalize.ingest.read (line 2)") and "after ingest" in p for p in problems)
    assert any(p.startswith("verticalize.kb ") and "support package models" in p for p in problems)
    assert len(problems) == 3, problems
    found = cycles(g)
    assert any("verticalize.serve.app <-> verticalize.serve.other" in c for c in found), found
    # A cycle between packages is found too.
    (pkg / "ingest" / "read.py").write_text("import verticalize.kb\n")
    (pkg / "kb" / "__init__.py").write_text("from verticalize.ingest import read\n")
    assert any(c == "package cycle: ingest <-> kb" for c in cycles(build_graph(tmp_path)))
