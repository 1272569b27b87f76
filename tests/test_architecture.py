"""The package's layers, read from its folders, and its import graph, read from the source (AST, every import:
module-level and inside functions).

Layers by folder: `harivo/data/` the shapes world (generator, checker, data loaders); `harivo/train/` training
(stage 1, stage 2, the losses); `harivo/evaluate/` and `harivo/bench/` evaluation and benchmarks; `harivo/explorer/`
and `app.py` the explorer; every other module of `harivo/` is the core (inference: model, pipeline, sampling,
attention, settings, tracing, the CLI ...), so a new module is placed by where it is put, not by a list here.

- no import cycle among harivo's modules and app.py;
- the core and the world import nothing of training, evaluation or the explorer;
- training, evaluation and the explorer do not lean on each other; the exceptions are benchmarks that time the very
  thing they import (listed in ALLOWED, with the reason);
- no module over 500 lines, no function over 80.
"""

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
APP = "app"
FOLDERS = {"harivo.data": "world", "harivo.train": "train", "harivo.evaluate": "eval", "harivo.bench": "eval",
           "harivo.explorer": "app"}
MAY_IMPORT = {"core": {"core", "world"}, "world": {"world", "core"}, "train": {"train", "core", "world"},
              "eval": {"eval", "core", "world"}, "app": {"app", "core", "world"}}
ALLOWED = {  # (importer, imported): why
    ("harivo.bench.cases", "harivo.train.stage2.run"): "the benchmark times one stage-2 training step itself",
    ("harivo.bench.cases", "harivo.train.stage2.base"): "... on the base model stage 2 loads",
    ("harivo.bench.cases", "harivo.train.stage2.config"): "... with stage 2's config and its validation",
    ("harivo.bench.cases", "harivo.train.stage2.training_module"): "... and the module stage 2 trains",
    ("harivo.bench.cases", "harivo.train.utils"): "... built as stage 2 builds it (lr schedule, step RNG)",
    ("harivo.bench.cases", "harivo.explorer"): "the benchmark times one app request (explorer.run_in_stages)",
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 500, 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in (ROOT / "harivo").rglob("*.py")}
    found[APP] = ROOT / "app.py"
    return found


def layer(name: str) -> str:
    """The layer of a module: the one of the folder it lies in (`FOLDERS`), the core for the rest of harivo/."""
    if name == APP:
        return "app"
    return next((kind for folder, kind in FOLDERS.items() if name == folder or name.startswith(folder + ".")),
                "core")


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
    assert "harivo.tokenizer" in g["harivo.train.stage1.data"]  # `from harivo.tokenizer import ...` in a function
    assert "harivo.data.checker" in g["harivo.train.stage1.evaluation"]  # inside a function, inside a loop
    assert "harivo.pipeline" in g["harivo.compat"] and "harivo.compat" not in g["harivo.pipeline"]
    assert "harivo.explorer.models" in g["harivo.explorer"]  # the package's face, through its __init__
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "harivo.train.stage2.run" not in g["harivo.train.stage2.resume"]  # only under `if TYPE_CHECKING:`


def test_layers_come_from_the_folders():
    assert layer("harivo.train.stage1.unet") == layer("harivo.train.losses") == layer("harivo.train") == "train"
    assert layer("harivo.evaluate.metrics") == layer("harivo.bench.cases") == layer("harivo.evaluate") == "eval"
    assert layer("harivo.data.checker") == "world" and layer("harivo.explorer.views") == layer(APP) == "app"
    assert layer("harivo.pipeline") == layer("harivo.tracing") == layer("harivo.noise") == "core"
    assert layer("harivo.a_module_added_tomorrow") == "core"
    top = sorted(p.stem for p in (ROOT / "harivo").glob("*.py"))
    assert "losses" not in top and "evaluate" not in top and "train" not in top  # training / evaluation: folders


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, f"import cycles: {found}"


def test_each_layer_imports_only_what_it_may():
    """Inference (the core) and the world import nothing of training, evaluation or the explorer; those three do
    not lean on each other (ALLOWED: the benchmarks that time training and the app)."""
    g = graph()
    bad = sorted((a, b) for a, targets in g.items() for b in targets
                 if layer(b) not in MAY_IMPORT[layer(a)] and (a, b) not in ALLOWED)
    assert not bad, f"imports across layers: {bad}"
    assert not [(a, b) for a, b in ALLOWED if b not in g.get(a, ())], "an ALLOWED import that is gone: remove it"


def _sources() -> dict[str, Path]:
    return modules()


def test_no_module_over_500_lines_and_no_function_over_80():
    long_modules, long_functions = [], []
    for name, path in _sources().items():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append((name, len(text.splitlines())))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append((f"{name}.{node.name}", n))
    assert not long_modules, f"modules over {MAX_MODULE_LINES} lines: {long_modules}"
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines: {long_functions}"
