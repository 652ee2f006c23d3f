"""Dependencies point one way (docs/ARCHITECTURE.md): kernels/ and profilers/ import nothing
of ours; tuner/ imports those two; runtime/ imports kernels/ (tuned configs reach it through
the config-source interface); reports/ reads run files; infertune/ wires them all; bench/ uses
the public API (never the CLI, never a private module or name); nothing imports the CLI.

"Imports" covers what a module reaches at run time, not only its import statements: a string
given to importlib.import_module / __import__, and `python -m MODULE` in a command list (a
subprocess is an import by other means). A dynamic import whose module is computed at run time
cannot be checked here, so each one is listed in DYNAMIC with the reason it is allowed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"infertune", "kernels", "tuner", "profilers", "runtime", "reports", "bench"}
ALLOWED = {
    "kernels": set(),
    "profilers": set(),
    "tuner": {"kernels", "profilers"},
    "runtime": {"kernels"},
    "reports": set(),
    "infertune": OURS - {"infertune", "bench"},
    "bench": OURS - {"bench"},
}
# (file, function) -> why its computed import is allowed.
DYNAMIC = {
    ("tuner/worker.py", "resolve_spec"): "a planted KernelSpec named package.module:ATTR (tests plant specs)",
}
# Entry points: `python -m infertune` and the console script are how a user starts the CLI.
ENTRY_POINTS = {Path("infertune/__main__.py")}


def _calls_import(node: ast.Call) -> bool:
    f = node.func
    return (isinstance(f, ast.Attribute) and f.attr == "import_module") or (
        isinstance(f, ast.Name) and f.id in ("import_module", "__import__"))


def _dash_m(node: ast.List | ast.Tuple) -> list[str]:
    """`[..., "-m", "pkg.mod", ...]`: the module a command list runs."""
    items = node.elts
    return [b.value for a, b in zip(items, items[1:])
            if isinstance(a, ast.Constant) and a.value == "-m" and isinstance(b, ast.Constant) and isinstance(b.value, str)]


def references(path: Path) -> tuple[set[str], set[str], list[str]]:
    """(modules reached, private names imported, functions with a computed import) of one file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    private: set[str] = set()
    computed: list[str] = []
    functions = {id(n): f.name for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f)}  # the innermost function wins: ast.walk visits outer functions first
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
            private.update(f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Call) and _calls_import(node) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                modules.add(arg.value)
            else:
                computed.append(functions.get(id(node), "<module>"))
        elif isinstance(node, (ast.List, ast.Tuple)):
            modules.update(_dash_m(node))
    return modules, private, computed


def _files(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        if "results" not in path.relative_to(ROOT).parts:
            yield path


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package):
    for path in _files(package):
        modules, _, _ = references(path)
        for name in modules:
            top = name.split(".")[0]
            if top in OURS and top != package:
                assert top in ALLOWED[package], f"{path.relative_to(ROOT)} reaches {name}"


def test_nothing_imports_the_cli():
    for package in ALLOWED:
        for path in _files(package):
            rel = path.relative_to(ROOT)
            if "cli" in rel.parts or rel in ENTRY_POINTS:
                continue
            for name in references(path)[0]:
                assert not name.startswith("infertune.cli"), f"{rel} reaches {name}"


def test_bench_uses_no_private_module_or_name():
    for path in _files("bench"):
        modules, private, _ = references(path)
        ours = [m for m in modules if m.split(".")[0] in OURS - {"bench"}]
        bad = [m for m in ours if any(part.startswith("_") and part != "__main__" for part in m.split("."))]
        bad += [n for n in private if n.split(".")[0] in OURS - {"bench"}]
        assert not bad, f"{path.relative_to(ROOT)} uses private {bad}"


def test_every_computed_import_is_listed():
    found = set()
    for package in ALLOWED:
        for path in _files(package):
            for function in references(path)[2]:
                found.add((str(path.relative_to(ROOT)), function))
    assert found <= set(DYNAMIC), f"computed imports not in DYNAMIC (say why each is allowed): {sorted(found - set(DYNAMIC))}"


def test_the_checks_see_dynamic_imports(tmp_path):
    """The reference finder itself: a string import, a `-m` command, a private name, a computed import."""
    sample = tmp_path / "sample.py"
    sample.write_text("import importlib, subprocess, sys\n"
                      "from kernels import _nvtx\n"
                      "def f(name):\n"
                      "    importlib.import_module('infertune.cli.db_cmd')\n"
                      "    subprocess.run([sys.executable, '-m', 'tuner.worker'])\n"
                      "    return importlib.import_module(name)\n")
    modules, private, computed = references(sample)
    assert {"infertune.cli.db_cmd", "tuner.worker", "kernels"} <= modules
    assert private == {"kernels._nvtx"} and computed == ["f"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports (statements anywhere in the file, relative ones resolved)."""
    graph: dict[str, set[str]] = {}
    for package in ALLOWED:
        for path in _files(package):
            name = _module_name(path)
            is_pkg = path.name == "__init__.py"
            base = name.split(".") if is_pkg else name.split(".")[:-1]
            deps = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom):
                    if node.level:
                        anchor = base[: len(base) - (node.level - 1)]
                        mod = ".".join(anchor + ([node.module] if node.module else []))
                    else:
                        mod = node.module or ""
                    deps.add(mod)
                    deps.update(f"{mod}.{a.name}" for a in node.names)
                elif isinstance(node, ast.Import):
                    deps.update(a.name for a in node.names)
            graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def test_no_two_modules_import_each_other():
    graph = _graph()
    pairs = sorted({tuple(sorted((a, b))) for a, deps in graph.items() for b in deps
                    if a in graph.get(b, ()) and not (a.startswith(b + ".") or b.startswith(a + "."))})
    assert not pairs, f"modules that import each other: {pairs}"
