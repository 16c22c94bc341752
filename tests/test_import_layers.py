"""The package's import rule (DEVELOPERS.md, "Layers"): no cycle, nothing imports a higher layer.

Walks every module's AST, function-level imports included, so a lazy import cannot hide a cycle.
"""

import ast
import os

import pytest
from paths import REPO

PACKAGE = os.path.join(REPO, "attngan_jax")

# (layer, module prefixes), lowest first; the longest matching prefix decides a module's layer.
LAYERS = (
    (0, ("attngan_jax.errors", "attngan_jax.types")),
    (1, ("attngan_jax.runtime", "attngan_jax.cli")),
    (
        2,
        (
            "attngan_jax.models",
            "attngan_jax.losses",
            "attngan_jax.data",
            "attngan_jax.metrics",
            "attngan_jax.convert",
            "attngan_jax.visualize",
        ),
    ),
    (3, ("attngan_jax.model_dir", "attngan_jax.config_lib", "attngan_jax.configs")),
    (4, ("attngan_jax.eval", "attngan_jax.convert.release", "attngan_jax.parity")),
    (5, ("attngan_jax.train",)),
    (6, ("attngan_jax.commands",)),  # the programs (train.py, eval.py, the console scripts)
)


def layer_of(module: str) -> int:
    best, layer = "", None
    for n, prefixes in LAYERS:
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, layer = p, n
    if layer is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and DEVELOPERS.md")
    return layer


def modules() -> dict[str, str]:
    out = {}
    for root, _, files in os.walk(PACKAGE):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                rel = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = path
    return out


def imports(path: str, module: str, known: set[str]) -> set[str]:
    """The package modules ``module`` imports (``from a import b`` counts ``a.b`` if a module)."""
    tree = ast.parse(open(path).read(), path)
    is_pkg = path.endswith("__init__.py")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = module.split(".")
                parent = parts if is_pkg else parts[:-1]
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            while n and n not in known:  # attngan_jax.x.y.func -> attngan_jax.x.y
                n = n.rpartition(".")[0]
            if n and n != module and n.startswith("attngan_jax"):
                out.add(n)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(p, m, known) - {"attngan_jax"} for m, p in mods.items()}


def test_no_import_from_a_higher_layer(graph):
    bad = [
        f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
        for m, deps in sorted(graph.items())
        if m != "attngan_jax"
        for d in sorted(deps)
        if layer_of(d) > layer_of(m)
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycle(graph):
    # Tarjan's strongly connected components; a package's __init__ importing its own submodules
    # (re-exports) is not a cycle unless a submodule imports the package back.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                sccs.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not sccs, f"import cycles: {sccs}"


def test_the_rule_sees_lazy_imports(tmp_path):
    """The walk counts a function-level import (so a lazy import cannot hide a cycle)."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from attngan_jax.train import gan\n")
    known = {"attngan_jax.train", "attngan_jax.train.gan", "attngan_jax.x"}
    assert imports(str(src), "attngan_jax.x", known) == {
        "attngan_jax.train",
        "attngan_jax.train.gan",
    }


def test_importing_the_package_leaves_xla_flags_alone():
    """``import attngan_jax`` (and its sub-packages) changes no process-wide flag."""
    import subprocess
    import sys

    code = (
        "import os; before = os.environ.get('XLA_FLAGS');"
        "import attngan_jax, attngan_jax.train.experiment, attngan_jax.eval.evaluators;"
        "print(before == os.environ.get('XLA_FLAGS'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.stdout.strip() == "True", r.stderr[-2000:]
