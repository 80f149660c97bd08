"""The docs a user copies from are true: every fenced command in README.md, CONTRIBUTING.md and docs/ is run or
checked here. `bench` commands are parsed by the real CLI (every option and value checked, config files read) and a
`bench run` is planned (its plugins, architectures and variant filters exist); benchmark scripts' flags are checked
against their parsers; Python blocks are executed, here or by the test named for them; README's Quick start is what
CI runs, verbatim."""

import importlib.util
import re
import shlex
import tomllib
import types
from pathlib import Path

import click
import pytest

from bench.cli import cli
from bench.plugins import manager as plugins

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "CONTRIBUTING.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
# Commands of other tools that docs may show: nothing of cnnbench's to check in them.
EXTERNAL = {"mkdir", "tar", "ray", "tox", "ruff", ".venv/bin/ruff", "nohup", "cd", "git", "mlflow"}
# Python blocks that another test runs, as the user would: (page, a line of the block) -> that test.
RUN_ELSEWHERE = {
    ("docs/deployment.md", 'Image.open("cat.jpg")'): (
        "tests/test_datasets.py::test_image_folder_of_jpegs_trains_with_class_names_from_the_folders"
    ),
    ("README.md", "session = ort.InferenceSession("): "tests/test_onnx.py::test_readme_onnx_example_runs_as_written",
    ("README.md", "result = bench.run("): "tests/test_api.py::test_the_readme_python_example_runs",
    (
        "docs/plugins.md",
        "def build(input_shape",
    ): "tests/test_plugin_authoring.py::test_the_documented_example_plugin_runs",
    ("docs/plugins.md", "def load(request):"): (
        "tests/test_plugin_authoring.py::test_the_documented_dataset_plugin_passes_its_documented_test"
    ),
    ("docs/plugins.md", "class TorchScript:"): "tests/test_plugin_authoring.py::test_hook_register_engines",
    ("docs/plugins.md", "def test_loads_and_is_what_it_says"): (
        "tests/test_plugin_authoring.py::test_the_documented_dataset_plugin_passes_its_documented_test"
    ),
}


def blocks(page: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of ``page``."""
    return re.findall(r"^```(\w*)\n(.*?)^```", (ROOT / page).read_text(), flags=re.S | re.M)


def shell_commands(code: str) -> list[list[str]]:
    """The simple commands of a shell block: comments dropped, continuations joined, `&&` chains split, leading
    VAR=value assignments dropped."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        tokens = shlex.split(line, comments=True)
        while tokens:
            command = tokens[: tokens.index("&&")] if "&&" in tokens else tokens
            tokens = tokens[len(command) + 1 :]
            while command and re.fullmatch(r"[A-Z_]+=.*", command[0]):
                command = command[1:]
            if command:
                out.append(command)
    return out


def all_commands() -> list[tuple[str, list[str]]]:
    return [(page, c) for page in PAGES for lang, code in blocks(page) if lang == "sh" for c in shell_commands(code)]


COMMANDS = all_commands()


def test_ci_runs_the_two_quick_start_commands_verbatim():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.+?)\n```", quick, flags=re.S)
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    assert "bench run --plugin cnn_dropout" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in commands:
        assert command in ci


def test_the_readme_is_a_storefront():
    """Issue 28: short, with the commands and the Python API near the top, depth in docs/."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 220
    headings = {line: i for i, line in enumerate(lines, 1) if line.startswith("## ")}
    assert headings["## Commands"] <= 150 and headings["## From Python"] <= 150
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", "\n".join(lines)))
    assert {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} - linked <= {"docs/report.md", "docs/plugins.md"}


def test_every_doc_page_is_in_the_index_and_every_link_resolves():
    index = (ROOT / "docs" / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name == "README.md" or f"]({page.name})" in index, f"docs/README.md does not list {page.name}"
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", (ROOT / page).read_text()):
            assert ((ROOT / page).parent / target).exists(), f"{page} links to {target}, which does not exist"


@pytest.mark.parametrize(
    ("page", "command"), [(p, c) for p, c in COMMANDS if Path(c[0]).name == "bench"], ids=lambda x: " ".join(x)
)
def test_every_bench_command_in_the_docs_parses_and_plans(page, command, monkeypatch):
    from bench.cli.options import NOT_CONFIG, where_given
    from bench.options.config import RunConfig
    from bench.sweep.plan import plan_run

    monkeypatch.chdir(ROOT)  # config files are named relative to the repository
    name, args = command[1], command[2:]
    assert name in cli.commands, f"{page}: `{' '.join(command)}`: no command {name}"
    ctx = cli.commands[name].make_context(name, list(args), parent=click.Context(cli, obj={}))
    if name == "run" and not ctx.params["resume_ref"]:
        options = {k: v for k, v in ctx.params.items() if k not in NOT_CONFIG}
        options["where"] = where_given(ctx, options["where"])
        config = RunConfig(**options)
        installed = plugins.get_plugins().info
        if all(p in installed for p in config.plugin):  # not a plugin the page makes first (bench new-plugin foo)
            assert plan_run(config), f"{page}: `{' '.join(command)}` plans no trial"


def _flags_of(script: Path) -> set[str]:
    text = script.read_text()
    for helper in re.findall(r"^from (\w+) import", text, flags=re.M):
        if (script.parent / f"{helper}.py").exists():
            text += (script.parent / f"{helper}.py").read_text()
    return set(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", text))


@pytest.mark.parametrize(
    ("page", "command"), [(p, c) for p, c in COMMANDS if Path(c[0]).name != "bench"], ids=lambda x: " ".join(x)
)
def test_every_other_command_in_the_docs_names_what_exists(page, command):
    where = f"{page}: `{' '.join(command)}`"
    program = Path(command[0]).name
    if program.startswith("python") and len(command) > 1 and command[1].startswith("benchmarks/"):
        script = ROOT / command[1]
        assert script.is_file(), where
        flags = {a.split("=")[0] for a in command[2:] if a.startswith("--")}
        assert flags <= _flags_of(script), f"{where}: {flags - _flags_of(script)} not among the script's options"
    elif program.startswith("python") and command[1] == "-m":
        assert command[2] in ("venv", "pytest") or importlib.util.find_spec(command[2]), where
    elif program == "pip":
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for target in command[2:]:
            if m := re.fullmatch(r"\.\[([\w,]+)\]", target):
                assert set(m.group(1).split(",")) <= set(extras), f"{where}: no such extra"
            elif target.startswith("./"):
                assert (ROOT / target).exists(), f"{where}: {target} does not exist"
    else:
        assert program in EXTERNAL, f"{where}: a command this test does not know how to check"


def test_every_python_block_in_the_docs_is_run(tmp_path, monkeypatch):
    """Each Python block either runs here or is claimed by a test that runs it."""
    claimed = set()
    for page in PAGES:
        for lang, code in blocks(page):
            if lang != "python":
                continue
            owner = next((test for (p, line), test in RUN_ELSEWHERE.items() if p == page and line in code), None)
            if owner:
                path, function = owner.split("::")
                assert f"def {function}(" in (ROOT / path).read_text(), f"{owner} does not exist"
                claimed.add(owner)
            elif "def test_found_and_builds" in code:
                _run_plugin_test_against_a_new_plugin(code, tmp_path, monkeypatch)
            else:
                pytest.fail(f"{page}: a Python block no test runs:\n{code}")
    assert claimed == set(RUN_ELSEWHERE.values())


def _run_plugin_test_against_a_new_plugin(code: str, tmp_path, monkeypatch):
    """docs/plugins.md's plugin test, against the plugin `bench new-plugin foo` writes."""
    from bench.cli.scaffold import new_plugin

    folder = new_plugin("foo", tmp_path, plugins.get_registry().names())
    module = types.ModuleType("cnnbench_foo")
    exec((folder / "cnnbench_foo.py").read_text(), module.__dict__)
    plugins.register_in_process(module, name="foo")
    try:
        namespace: dict = {}
        exec(code, namespace)
        namespace["test_found_and_builds"]()
    finally:
        plugins.unregister_in_process("foo")


NAMED = re.compile(r"(?<![\w/.])bench(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
NOT_NAMES = {"bench.db"}  # the store's file name, not a module


def _resolves(dotted: str) -> bool:
    """Whether ``bench.a.b.c`` is a module of bench, or a name one of its modules (or `bench` itself) has."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def stale_names(paths) -> list[str]:
    """Every `bench.x.y` that a page, a docstring or a comment names and that names nothing (moved or renamed)."""
    out = []
    for path in paths:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for match in NAMED.finditer(line):
                name = match.group(0).rstrip(".")
                if name not in NOT_NAMES and not _resolves(name):
                    out.append(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{n}: {name}")
    return out


def test_every_module_and_name_the_docs_and_docstrings_give_exists():
    """A reader who follows "bench.data.splits.Normalized" or "bench.train.precision.bf16_speedup" finds it: the
    pages, and the docstrings and comments of the package, its plugins and benchmarks, name only what exists."""
    paths = [ROOT / p for p in PAGES]
    paths += [*(ROOT / "bench").rglob("*.py"), *(ROOT / "plugins").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    assert stale_names(paths) == []


def test_the_name_check_finds_a_moved_module(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See bench.runtime.protocol.BenchSettings, bench.speed.bf16_speedup and runs/bench.db.\n")
    assert stale_names([page]) == ["page.md:1: bench.speed.bf16_speedup"]


DEFAULT_SAID = re.compile(r"`--([a-z][a-z-]*)`[^.;()`]{0,25}\(default `?([-+0-9.e]+)`?[;,)]")


def test_a_default_the_docs_give_is_the_declared_one():
    """`--tolerance` (default 0.001), `--val-ratio` (default 0.2): each number a page gives as an option's default is
    the one bench/options declares (for an axis, what a trial gets when no plugin says)."""
    from bench.options.config import defaults, option_of

    said = [
        (page, m.group(1).replace("-", "_"), float(m.group(2)))
        for page in PAGES
        for m in DEFAULT_SAID.finditer((ROOT / page).read_text().replace("\n", " "))
    ]
    assert len(said) >= 3
    for page, name, value in said:
        option = option_of(name)
        declared = option.trial_default if option.trial_default is not None else defaults()[name]
        assert value == declared, f"{page}: --{name} (default {value:g}), declared {declared}"


def test_runs_md_lists_every_axis_of_the_grid():
    from bench.options.config import AXES

    text = (ROOT / "docs" / "runs.md").read_text().replace("\n", " ")
    listed = re.search(r"every list option \((.+?)\) is one axis", text).group(1)
    assert re.findall(r"`--([a-z-]+)`", listed) == [a.replace("_", "-") for a in AXES]


def test_every_file_of_the_package_the_docs_and_docstrings_give_exists():
    paths = [ROOT / p for p in PAGES]
    paths += [*(ROOT / "bench").rglob("*.py"), *(ROOT / "plugins").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    for path in paths:
        for named in re.findall(r"(?<![\w/])(bench/[\w/]*\w(?:\.py)?/?)", path.read_text()):
            assert (ROOT / named).exists(), f"{path.relative_to(ROOT)} names {named}, which does not exist"
