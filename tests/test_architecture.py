"""The package's import graph, read from the source (AST, every import: module-level and inside functions).

- no import cycle among harivo's modules and app.py;
- the core (model, sampler, pipeline, add-ons, outputs, data ...) imports nothing of the app, the CLI, training or
  evaluation;
- the outer layers do not lean on each other, and nothing imports a training module for a helper; the two
  exceptions are benchmarks that time the very thing they import (listed in ALLOWED, with the reason).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APP = "app"
CLI = {"harivo.generate"}
TRAIN = {"harivo.train", "harivo.train_t2i", "harivo.train_utils", "harivo.t2i_models"}
TRAIN_PACKAGES = ("harivo.stage1", "harivo.stage2")  # stage 1 and stage 2, split by concern
EVAL = {"harivo.evaluate", "harivo.eval_metrics", "harivo.eval_report", "harivo.eval_stats", "harivo.bench",
        "harivo.bench_cases", "harivo.verb_probe", "harivo.token_focus"}
ALLOWED = {  # (importer, imported): why
    ("harivo.bench_cases", "harivo.stage2.run"): "the benchmark times one stage-2 training step itself",
    ("harivo.bench_cases", "harivo.stage2.base"): "... on the base model stage 2 loads",
    ("harivo.bench_cases", "harivo.stage2.config"): "... with stage 2's config and its validation",
    ("harivo.bench_cases", "harivo.stage2.training_module"): "... and the module stage 2 trains",
    ("harivo.bench_cases", "harivo.train_utils"): "... built as stage 2 builds it (lr schedule, step RNG)",
    ("harivo.bench_cases", "harivo.explorer"): "the benchmark times one app request (explorer.run_and_render)",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in (ROOT / "harivo").rglob("*.py")}
    found[APP] = ROOT / "app.py"
    return found


def layer(name: str) -> str:
    if name == APP or name == "harivo.explorer" or name.startswith("harivo.explorer."):
        return "app"
    if name in CLI:
        return "cli"
    if name in TRAIN or any(name == p or name.startswith(p + ".") for p in TRAIN_PACKAGES):
        return "train"
    if name in EVAL:
        return "eval"
    return "core"


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in the file (`from . import x` and `from .pkg import sub`
    count as imports of the submodule when there is one). Imports under `if TYPE_CHECKING:` are left out: they
    never run, and a type hint may name a class of a module that imports this one."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                 and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                 for child in node.body for n in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # harivo.viz.plt -> harivo.viz
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_reader_sees_function_level_imports():
    g = graph()
    assert "harivo.tokenizer" in g["harivo.stage1.data"]  # `from harivo.tokenizer import ...` inside a function
    assert "harivo.data.checker" in g["harivo.stage1.evaluation"]  # inside a function, inside a loop
    assert "harivo.pipeline" in g["harivo.compat"] and "harivo.compat" not in g["harivo.pipeline"]
    assert "harivo.explorer.models" in g["harivo.explorer"]  # the package's face, through its __init__
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "harivo.stage2.run" not in g["harivo.stage2.resume"]  # only under `if TYPE_CHECKING:`
    assert layer("harivo.stage1.unet") == layer("harivo.stage2") == "train"


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


@pytest.mark.parametrize("outer", ["app", "cli", "train", "eval"])
def test_core_imports_nothing_of_the_outer_layers(outer):
    g = graph()
    bad = sorted((a, b) for a, targets in g.items() if layer(a) == "core" for b in targets if layer(b) == outer)
    assert not bad, f"core modules import {outer} modules: {bad}"


def test_outer_layers_do_not_lean_on_each_other():
    g = graph()
    bad = sorted((a, b) for a, targets in g.items() for b in targets
                 if layer(a) not in ("core", layer(b)) and layer(b) != "core" and (a, b) not in ALLOWED)
    assert not bad, f"imports across app / CLI / training / evaluation: {bad}"
