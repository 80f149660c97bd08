"""The plugin author's path: entry-point discovery, broken plugins, the allow-list, the docs, the sample
plugin and `bench new-plugin`, each through real entry points."""

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from bench.plugins import hookspecs
from bench.plugins import manager as plugins

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """Install fake distributions: a module plus a dist-info folder with an entry point in group cnnbench,
    on sys.path, so that importlib.metadata finds them exactly as it finds pip-installed packages."""
    root = tmp_path / "site"
    root.mkdir()
    modules = []

    def install(name: str, source: str, version: str = "1.2.3"):
        module = f"cnnbench_{name}"
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        info = root / f"cnnbench_{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: cnnbench-{name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[cnnbench]\n{name} = {module}\n")
        modules.append(module)

    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("BENCH_LOAD_PLUGINS")  # conftest allows built-ins only; these are installed for the test
    plugins.reset()
    yield install
    for module in modules:
        sys.modules.pop(module, None)
    plugins.reset()


GOOD = """
    import bench
    from torch import nn

    def build(shape, classes, width=4):
        return nn.Sequential(nn.Flatten(), nn.Linear(shape[0] * shape[1] * shape[2], classes))

    @bench.hookimpl
    def register_architectures(register):
        register("good_linear", build, variants={"width": [4]}, description="linear")
"""

BROKEN = {
    "import": ("raise ImportError(\"needs libfoo: pip install 'cnnbench[foo]'\")", "ImportError: needs libfoo"),
    "hook": (
        """
        import bench

        @bench.hookimpl
        def register_architectures(register):
            raise RuntimeError("boom inside the hook")
        """,
        "RuntimeError: boom inside the hook",
    ),
    "duplicate": (
        """
        import bench
        from torch import nn

        @bench.hookimpl
        def register_architectures(register):
            register("cnn_vgg", lambda s, c: nn.Linear(1, c), variants={})
        """,
        "'cnn_vgg' is registered twice: by plugin 'cnn_vgg' and by plugin 'duplicate'",
    ),
    "misspelled": (
        """
        import bench

        @bench.hookimpl
        def register_architecture(register):
            pass
        """,
        "register_architecture",
    ),
}


def _plugins_json(invoke):
    return {p["name"]: p for p in invoke.json("plugins")}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_plugin_is_reported_by_name_and_the_others_work(installed, invoke, kind, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # the plugins table with whole cells
    source, message = BROKEN[kind]
    installed(kind, source)
    installed("good", GOOD)
    rows = _plugins_json(invoke)
    assert message in rows[kind]["error"]
    assert rows[kind]["architectures"] == [] and rows[kind]["version"] == "1.2.3"
    assert rows["good"]["error"] is None and rows["good"]["architectures"] == ["good_linear"]
    assert rows["cnn_vgg"]["error"] is None  # a duplicate takes nothing away from the first registrant
    result = invoke("run", "--plugin", "good", "--epochs", "1", "--no-benchmark", "-q")
    assert result.exit_code == 0, result.output
    result = invoke("run", "--plugin", kind, "--epochs", "1")
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"Error: plugin '{kind}' is broken:") and message in result.output
    assert result.output.strip().count("\n") == 0
    if kind in ("import", "hook"):  # nothing registered: `bench list` names the plugin, not "no architecture"
        result = invoke("list", kind)
        assert result.exit_code == 1 and f"plugin '{kind}' did not load: {message}" in result.output
    if kind == "import":  # the table shows the error as text, not as rich markup ('[foo]' kept)
        assert "cnnbench[foo]" in invoke("plugins").output


def test_a_model_that_fails_on_its_first_forward_pass_is_named(installed, invoke):
    installed(
        "badforward",
        """
        import bench
        from torch import nn

        @bench.hookimpl
        def register_architectures(register):
            register("wrong_size", lambda shape, classes: nn.Sequential(nn.Flatten(), nn.Linear(5, classes)),
                     variants={}, description="its linear layer expects 5 features")
        """,
    )
    installed("good", GOOD)
    rows = _plugins_json(invoke)
    error = rows["badforward"]["architecture_errors"]["wrong_size"]
    assert error.startswith("fails on its first forward pass (1x8x8): RuntimeError")
    assert rows["good"]["architecture_errors"] == {}
    result = invoke("run", "--plugin", "badforward", "--epochs", "1", "--no-benchmark")
    assert result.exit_code == 0
    (trial,) = invoke.json("report")
    assert trial["status"] == "failed" and trial["plugin"] == "badforward" and "RuntimeError" in trial["note"]


def test_the_allow_list_loads_only_the_named_third_party_plugins(installed, invoke, monkeypatch):
    installed("import", BROKEN["import"][0])
    installed("good", GOOD)
    monkeypatch.setenv("BENCH_LOAD_PLUGINS", "good")
    plugins.reset()
    rows = _plugins_json(invoke)
    assert "import" not in rows and "good" in rows and "cnn_vgg" in rows
    monkeypatch.setenv("BENCH_LOAD_PLUGINS", "")
    plugins.reset()
    rows = _plugins_json(invoke)
    assert "good" not in rows and {"cnn_baseline", "cnn_dropout", "cnn_vgg"} <= set(rows)


def test_hook_register_architectures(installed, invoke):
    """The hook end to end: an entry-point plugin's architectures are stamped with its name, listed, and run."""
    installed("good", GOOD, version="2.0")
    rows = _plugins_json(invoke)
    assert rows["good"] == {
        "name": "good",
        "version": "2.0",
        "distribution": "cnnbench-good",
        "builtin": False,
        "hooks": ["register_architectures"],
        "architectures": ["good_linear"],
        "datasets": [],
        "engines": [],
        "error": None,
        "architecture_errors": {},
    }
    archs = {a["name"]: a for a in invoke.json("list")["architectures"]}
    assert archs["good_linear"]["plugin"] == "good"


def _hookspecs():
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "cnnbench_spec")]


def test_every_hook_has_a_documentation_section_and_a_test():
    docs = DOCS.read_text()
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    assert _hookspecs() == ["register_architectures", "register_datasets", "register_engines"]
    for name in _hookspecs():
        signature = f"{name}{inspect.signature(getattr(hookspecs, name))}"
        assert f"\n## {signature}\n" in docs, f"docs/plugins.md needs a section headed '## {signature}'"
        assert f"def test_hook_{name}(" in tests, f"tests need a test_hook_{name}"


def test_the_documented_example_plugin_runs():
    section = DOCS.read_text().split("## register_architectures(register)", 1)[1]
    code = re.search(r"```python\n(.+?)```", section, flags=re.S).group(1)
    module = types.ModuleType("docs_example")
    exec(code, module.__dict__)
    plugins.register_in_process(module, name="docs_example")
    try:
        loaded = plugins.get_plugins()
        assert loaded.info["docs_example"].error is None
        arch = loaded.registry.get("one_conv")
        import torch

        for shape in [(1, 8, 8), (3, 32, 32)]:
            assert arch.build(shape, 10, {"width": 32})(torch.zeros(2, *shape)).shape == (2, 10)
    finally:
        plugins.unregister_in_process("docs_example")


# --- real packages: built by pip, found through their entry points, run by the bench command -----------


def _pip_install(packages: list[Path], target: Path) -> None:
    # Built with this environment's setuptools where it has one (as `pip install -e .` needed it): an isolated
    # build environment would install setuptools afresh, the slowest part of this test.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            *isolation,
            "--target",
            str(target),
            *map(str, packages),
        ],
        check=True,
        capture_output=True,
    )


def _bench(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "200"}
    env.pop("BENCH_STORE", None)
    env.pop("BENCH_LOAD_PLUGINS", None)  # the plugin this test installed must load
    bench = Path(sys.executable).parent / "bench"
    return subprocess.run([str(bench), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_new_plugin_output_and_the_sample_plugin_install_and_run(tmp_path, invoke):
    """Both real packages (the `bench new-plugin` scaffold and examples/cnnbench-mobilenet) built by pip into one
    site, found through their entry points by the `bench` command, trained, exported and benchmarked; then each
    package's own tests pass with it installed. One site and one run for both keep the subprocesses few."""
    result = invoke("new-plugin", "foo", "--dir", tmp_path)
    assert result.exit_code == 0, result.output
    scaffold = tmp_path / "cnnbench-foo"
    assert {p.name for p in scaffold.iterdir()} == {"pyproject.toml", "README.md", "cnnbench_foo.py", "tests"}
    sample = ROOT / "examples" / "cnnbench-mobilenet"
    site = tmp_path / "site"
    _pip_install([scaffold, sample], site)
    listed = {p["name"]: p for p in json.loads(_bench(["plugins", "--json"], site, tmp_path).stdout)}
    for plugin, architectures in (("foo", ["foo"]), ("mobilenet", ["mobilenet_ds"])):
        assert listed[plugin]["version"] == "0.1.0" and listed[plugin]["architectures"] == architectures
        assert listed[plugin]["error"] is None and listed[plugin]["architecture_errors"] == {}
    run = _bench(
        [
            "run",
            "--plugin",
            "foo",
            "--plugin",
            "mobilenet",
            "--epochs",
            "1",
            "--min-runs",
            "20",
            "--min-time",
            "0.05",
            "--batch-sizes",
            "1",
            "--json",
        ],
        site,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    trials = json.loads(run.stdout)
    assert all(t["status"] == "completed" for t in trials)
    assert {t["architecture"] for t in trials} == {"foo", "mobilenet_ds"}
    # one epoch may leave a model at chance (then no winner, not deployed by the run): each trial named deploys it
    named = [f"t{t['trial']:03d}" for t in trials]
    timing = ["--min-runs", "20", "--min-time", "0.05", "--batch-sizes", "1"]
    assert _bench(["benchmark", "latest", *named, *timing], site, tmp_path).returncode == 0
    trials = json.loads(_bench(["report", "--json"], site, tmp_path).stdout)
    for arch in ("foo", "mobilenet_ds"):
        best = next(t for t in trials if t["architecture"] == arch)
        assert best["onnx"]["status"] == "ok" and best["latency"]
    # Each package's own tests, run with the package installed.
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(tmp_path),
        str(scaffold / "tests"),
        str(sample / "tests"),
    ]
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("BENCH_LOAD_PLUGINS", None)
    tests = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert tests.returncode == 0, tests.stdout[-2000:]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Foo", "invalid plugin name"),
        ("cnn_vgg", "a plugin called 'cnn_vgg' is already installed"),
        ("tv_resnet18", "an architecture called 'tv_resnet18' already exists"),
        ("9lives", "invalid plugin name"),
    ],
)
def test_new_plugin_refuses_bad_names(invoke, tmp_path, name, message):
    result = invoke("new-plugin", name, "--dir", tmp_path)
    assert result.exit_code == 2 and message in result.output


def test_new_plugin_refuses_to_overwrite(invoke, tmp_path):
    (tmp_path / "cnnbench-bar").mkdir()
    (tmp_path / "cnnbench-bar" / "keep.txt").write_text("mine")
    result = invoke("new-plugin", "bar", "--dir", tmp_path)
    assert result.exit_code == 1 and "already exists and is not empty" in result.output
    assert (tmp_path / "cnnbench-bar" / "keep.txt").read_text() == "mine"


def test_the_documented_dataset_plugin_passes_its_documented_test():
    docs = DOCS.read_text()
    example = re.search(r"```python\n(.+?)```", docs.split("## register_datasets(register)", 1)[1], flags=re.S)
    testing = re.findall(r"```python\n(.+?)```", docs.split("## Testing a plugin", 1)[1], flags=re.S)
    module = types.ModuleType("docs_dataset")
    exec(example.group(1), module.__dict__)
    plugins.register_in_process(module, name="docs_dataset")
    try:
        (dataset_test,) = [code for code in testing if "load_dataset" in code]
        namespace: dict = {}
        exec(dataset_test, namespace)
        namespace["test_loads_and_is_what_it_says"]()
    finally:
        plugins.unregister_in_process("docs_dataset")


def test_every_register_keyword_and_request_field_is_documented():
    from dataclasses import fields

    from bench.data.registry import DatasetRegistry, Request
    from bench.models.registry import Registry

    docs = DOCS.read_text()
    for register in (Registry().register_callback("x"), DatasetRegistry().register_callback("x")):
        for name in inspect.signature(register).parameters:
            assert f"- `{name}" in docs, f"docs/plugins.md does not document register(..., {name})"
    for field in fields(Request):
        assert f"`{field.name}`" in docs, f"docs/plugins.md does not document Request.{field.name}"


def test_hook_register_engines(installed, invoke, tiny_plugin, store_path):
    """Issue 27: a third-party engine, written from docs/plugins.md alone (its example, verbatim) in an installed
    package, is found through its entry point and timed and evaluated under cnnbench's protocol."""
    section = DOCS.read_text().split("## register_engines(register)", 1)[1]
    installed("torchscript", re.search(r"```python\n(.+?)```", section, flags=re.S).group(1))
    assert _plugins_json(invoke)["torchscript"]["engines"] == ["torchscript"]
    run = ("--plugin", "tiny", "--where", "width=8", "--epochs", "1", "--no-benchmark", "-q")
    assert invoke("run", *run).exit_code == 0
    args = ("--engines", "torchscript,torch", "--batch-sizes", "1", "--min-runs", "5", "--min-time", "0")
    args += ("--exporter", "torchscript")  # the engine plugin is the point, not the ONNX file (tests/test_onnx.py)
    result = invoke("benchmark", "latest", *args)
    assert result.exit_code == 0, result.output
    from bench.store import Store

    with Store(store_path) as store:
        (trial,) = store.trials(store.run()["id"])
        rows = {(r["engine"], r["status"]) for r in store.latency_of(trial["id"])}
        assert rows == {("torchscript", "ok"), ("torch", "ok")}
        (ts,) = [e for e in store.evaluations_of(trial["id"]) if e["engine"] == "torchscript"]
        assert ts["status"] == "ok" and ts["test_acc"] == trial["test_acc"] and ts["top1_agreement"] == 1.0
        assert ts["method"]["mode"] == "torch.jit.trace, frozen"
    unknown = invoke("benchmark", "latest", "--engines", "torchscrpt")
    assert unknown.exit_code == 2 and "unknown engine 'torchscrpt'; did you mean torchscript?" in unknown.output
