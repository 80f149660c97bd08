"""The house: bench's packages are its pipeline's stages and import one way (each only from itself and the stages below
it, function-level imports included; CONTRIBUTING.md's table lists them in this order), plugins and examples use only
the plugin API, modules and functions stay small, and statuses and precisions have one definition."""

import ast
import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# The stages, lowest first: a module imports from its own package and those before it, never after.
LAYERS = (
    "core",
    "options",
    "store",
    "results",
    "data",
    "models",
    "runtime",
    "plugins",
    "train",
    "deploy",
    "report",
    "tracking",
    "sweep",
    "cli",
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in BENCH.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the bench modules it imports anywhere in its body. ``from bench.x import y`` imports the submodule
    bench.x.y where there is one, the module bench.x otherwise."""
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


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a later stage (or of the front door, `bench` itself) by a module of an earlier one."""
    out = []
    for module, deps in sorted(graph.items()):
        if module == "bench":
            continue  # the front door re-exports the API from every stage
        stage = LAYERS.index(module.split(".")[1])
        for dep in sorted(deps):
            if dep == "bench" or LAYERS.index(dep.split(".")[1]) > stage:
                out.append(f"{module} imports {dep}")
    return out


def test_bench_has_no_import_cycle():
    graph = import_graph()
    assert "bench.deploy.steps" in graph and "bench.sweep.execute" in graph["bench.sweep.runner"]
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_package_is_a_stage_and_imports_only_from_its_own_and_earlier_stages():
    packages = {p.name for p in BENCH.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(LAYERS), f"a package that is no stage, or a stage that is gone: {packages ^ set(LAYERS)}"
    assert not [p.name for p in BENCH.glob("*.py") if p.name != "__init__.py"], "modules belong to a stage's package"
    assert layer_violations(import_graph()) == []


def test_every_package_is_installed():
    import tomllib

    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    assert set(listed) == {"bench", "bench_plugins", *(f"bench.{p}" for p in LAYERS)}


def test_the_layer_check_finds_an_import_of_a_later_stage():
    graph = {"bench.data.x": {"bench.core.errors"}, "bench.store.y": {"bench.sweep.runner"}, "bench.core.z": {"bench"}}
    assert layer_violations(graph) == ["bench.core.z imports bench", "bench.store.y imports bench.sweep.runner"]


def test_each_package_lists_its_modules():
    """Each stage's __init__.py is its table of contents: every module of the package is named in its docstring."""
    for stage in LAYERS:
        package = BENCH / stage
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        modules = [p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        assert not [m for m in modules if m not in doc], f"bench/{stage}/__init__.py does not list every module"


def test_contributing_lists_the_stages_in_their_order():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    table = text[text.index("| stage |") :].split("\n\n")[0]
    listed = re.findall(r"^\| `bench/(\w+)/` \|", table, flags=re.M)
    assert tuple(listed) == LAYERS


def _bench_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of each import of bench or of one of its modules in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "bench"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bench":
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def api_violations(paths) -> list[str]:
    """Imports of anything but `bench` and the names it exports (bench.__all__): the plugin API."""
    import bench

    out = []
    for path in paths:
        for line, module, names in _bench_imports(path):
            if module != "bench" or set(names) - set(bench.__all__):
                what = f"from {module} import {', '.join(names)}" if names else f"import {module}"
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                out.append(f"{where}:{line}: {what}")
    return out


def test_plugins_and_examples_use_only_the_plugin_api():
    paths = [*(ROOT / "plugins").rglob("*.py"), *(ROOT / "examples").rglob("*.py")]
    assert len(paths) > 10 and api_violations(paths) == []
    for path in paths:  # bench.x attribute paths too: bench.models.layers.conv_stage is not the API
        text = path.read_text()
        for used in re.findall(r"\bbench\.([A-Za-z_]+)", text):
            assert used in __import__("bench").__all__, f"{path.relative_to(ROOT)} uses bench.{used}"


def test_the_plugin_author_docs_name_only_the_plugin_api():
    import bench

    text = (ROOT / "docs" / "plugins.md").read_text()
    used = set(re.findall(r"\bbench\.([A-Za-z_]+)", text))
    assert used and used <= set(bench.__all__), f"docs/plugins.md names {used - set(bench.__all__)}"
    from_imports = re.findall(r"from bench(\.[\w.]+)? import", text)
    assert from_imports and all(m == "" for m in from_imports), "docs/plugins.md imports from inside bench"


def test_every_public_name_exists():
    import bench

    for name in bench.__all__:
        assert getattr(bench, name) is not None, name


def test_the_api_check_finds_an_internal_import(tmp_path):
    plugin = tmp_path / "plugin.py"
    plugin.write_text("import bench\nfrom bench import conv_stage\nfrom bench.models.layers import mlp_head\n")
    assert api_violations([plugin]) == ["plugin.py:3: from bench.models.layers import mlp_head"]


MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# Functions allowed past MAX_FUNCTION_LINES, each with the reason it reads better whole ("module:function": why).
LONG_FUNCTIONS: dict[str, str] = {}


def long_functions(paths, root: Path = ROOT) -> dict[str, int]:
    """ "module:function" -> its lines, for every function (or method) of ``paths`` longer than MAX_FUNCTION_LINES."""
    out = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    out[f"{path.relative_to(root).with_suffix('').as_posix()}:{node.name}"] = lines
    return out


def test_modules_and_functions_are_small():
    """A module a reader can hold in mind (at most 400 lines), functions that read top to bottom (at most 80)."""
    big = {
        p.relative_to(ROOT).as_posix(): n
        for p in BENCH.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert big == {}
    long = long_functions(BENCH.rglob("*.py"))
    assert set(long) <= set(LONG_FUNCTIONS), f"functions over {MAX_FUNCTION_LINES} lines: {long}"
    assert all(LONG_FUNCTIONS.values()), "each exception says why"


def test_the_size_check_finds_a_long_function(tmp_path):
    module = tmp_path / "m.py"
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    module.write_text(f"def short():\n    pass\n\n\ndef long():\n{body}\n")
    assert long_functions([module], tmp_path) == {"m:long": MAX_FUNCTION_LINES + 1}


def test_the_formatter_formats_the_tree():
    skips = sum(
        p.read_text().count("# fmt" + ": skip")
        for folder in ("bench", "plugins", "tests", "benchmarks")
        for p in (ROOT / folder).rglob("*.py")
    )
    assert skips == 0


def status_literals(paths) -> list[str]:
    """Text constants (docstrings aside) that spell a status or a precision by hand: each has its definition in
    bench/core/status.py, and a str enum member compares equal to the stored text."""
    from enum import StrEnum

    from bench.core import status

    words = {m.value for e in vars(status).values() if isinstance(e, type) and issubclass(e, StrEnum) for m in e}
    words.discard("")
    out = []
    for path in paths:
        tree = ast.parse(path.read_text())
        docs = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        out += [
            f"{path.name}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in words and id(node) not in docs
        ]
    return out


def test_statuses_and_precisions_are_spelled_only_by_their_definitions():
    """No "ok", "pruned", "fp32"... as text in bench/: r["status"] == MeasurementStatus.OK, r["precision"] (a NOT NULL
    column), Precision.FP32. The store's schema (SQL) and the definitions themselves are the exceptions."""
    paths = [
        p for p in BENCH.rglob("*.py") if p.relative_to(BENCH).as_posix() not in ("core/status.py", "store/schema.py")
    ]
    assert status_literals(paths) == []


def test_the_literal_check_finds_a_status_spelled_by_hand(tmp_path):
    code = tmp_path / "m.py"
    code.write_text(
        '"""ok"""\n\ndef f(r):\n    """failed"""\n    return r["status"] == "ok" or r.get("precision") == "fp32"\n'
    )
    assert status_literals([code]) == ["m.py:5: 'ok'", "m.py:5: 'fp32'"]


def test_trial_labels_have_one_definition():
    for path in [*BENCH.rglob("*.py"), *(ROOT / "plugins").glob("*.py")]:
        if path.name != "formats.py":
            assert not re.search(r"t\{[^}]*:03d\}", path.read_text()), f"{path.name} writes a trial label by hand"


def test_the_benchmark_scripts_import_what_exists():
    """benchmarks/ is not run by the suite (its figures take minutes): at least every name a script imports from
    bench, or from its sibling scripts, must exist, so a renamed function breaks a test rather than a measurement."""
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
