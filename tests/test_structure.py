"""The house (issue 28): bench's imports point one way (no cycle, function-level imports included), the modules of the
store, the trainer and the report stay small, and the formatter formats the tree."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def _modules() -> dict[str, Path]:
    out = {}
    for path in BENCH.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the bench modules it imports anywhere in its body. ``from bench import x`` imports the submodule
    bench.x where there is one (not the package's front door), the package itself otherwise."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module in modules:
                subs = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
                deps |= subs | ({node.module} if len(subs) < len(node.names) else set())
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_bench_has_no_import_cycle():
    graph = import_graph()
    assert "bench.deploy" in graph and "bench.sweep.runner" in graph["bench.sweep"] | {"bench.sweep.runner"}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_stages_below_the_interface_do_not_import_it():
    graph = import_graph()
    interface = {"bench.cli", "bench.cli_options", "bench.display", "bench"}
    for name, deps in graph.items():
        if name not in interface:
            assert not deps & interface, f"{name} imports {deps & interface}"


def test_the_store_the_trainer_and_the_report_are_small_modules():
    paths = [*(BENCH / "store").glob("*.py"), *(BENCH / "report").glob("*.py"), BENCH / "training.py"]
    for path in paths:
        assert len(path.read_text().splitlines()) < 350, f"{path.relative_to(ROOT)} has grown past 350 lines"


def test_the_formatter_formats_the_tree():
    skips = sum(
        p.read_text().count("# fmt: skip")
        for folder in ("bench", "plugins", "tests", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
    )
    assert skips < 40


def test_statuses_and_trial_labels_have_one_definition():
    for path in [*BENCH.rglob("*.py"), *(ROOT / "plugins").glob("*.py")]:
        text = path.read_text()
        if path.name not in ("formats.py",):
            assert not re.search(r"t\{[^}]*:03d\}", text), f"{path.name} writes a trial label by hand"
        if path.name not in ("status.py", "schema.py"):
            assert '"interrupted"' not in text, f"{path.name} spells a status by hand"


def test_the_benchmark_scripts_import_what_exists():
    """benchmarks/ is not run by the suite (its figures take minutes): at least every name a script imports from
    bench, or from its sibling scripts, must exist, so a renamed function breaks a test rather than a measurement."""
    import ast
    import importlib

    folder = ROOT / "benchmarks"
    siblings = {p.stem: ast.parse(p.read_text()) for p in folder.glob("*.py")}
    for name, tree in siblings.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.module is None:
                continue
            wanted = [a.name for a in node.names]
            if node.module.split(".")[0] == "bench":
                module = importlib.import_module(node.module)
                missing = [w for w in wanted if not hasattr(module, w) and not _is_module(f"{node.module}.{w}")]
            elif node.module in siblings:
                defined = {
                    n.name for n in siblings[node.module].body if isinstance(n, ast.FunctionDef | ast.ClassDef)
                } | {
                    t.id
                    for n in siblings[node.module].body
                    if isinstance(n, ast.Assign)
                    for t in n.targets
                    if isinstance(t, ast.Name)
                }
                missing = [w for w in wanted if w not in defined]
            else:
                continue
            assert not missing, f"benchmarks/{name}.py imports {missing} from {node.module}, which has no such name"


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
