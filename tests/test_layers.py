"""The import picture of ARCHITECTURE.md, checked on the source with ``ast``.

Layers, bottom to top: the core (``cloud3d`` without ``cloud3d.cli``), the stages in the order
of the data path (capture < cloud3d_dataset < analysis < models < baselines), then the command
line (``cloud3d.cli``). A module may import its own layer and the layers below it, nothing
above; and no modules import each other in a circle. Every import counts: at module level,
inside functions, under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from helpers import ROOT

#: layer of each top-level package, bottom (0) to top
PACKAGES = {"cloud3d": 0, "capture": 1, "cloud3d_dataset": 2, "analysis": 3, "models": 4,
            "baselines": 5}
CLI, CLI_RANK = "cloud3d.cli", 6


def layer(module: str) -> tuple[str, int]:
    """``(name, rank)`` of the layer ``module`` belongs to."""
    if module == CLI or module.startswith(CLI + "."):
        return CLI, CLI_RANK
    top = module.split(".")[0]
    return ("core" if top == "cloud3d" else top), PACKAGES[top]


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name -> file of every module of the packages."""
    out = {}
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            parts = list(f.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """First-party modules ``name`` (at ``path``) imports, with the line of each import; a
    ``from pkg import sub`` of a submodule counts as an import of ``pkg.sub``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for t in dict.fromkeys(targets):  # one line per module, however many names
            if t.split(".")[0] in PACKAGES:
                found.append((t, node.lineno))
    return found


def _owner(target: str, known: set[str]) -> str | None:
    """The module an import of ``target`` runs: itself, or the package that defines it."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[str]]:
    """(module -> modules it imports, imports against the layers as readable lines)."""
    mods = modules(root)
    known = set(mods)
    graph: dict[str, set[str]] = defaultdict(set)
    bad = []
    for name, path in mods.items():
        src_layer, src_rank = layer(name)
        for target, line in imports(name, path, known):
            owner = _owner(target, known)
            if owner is None:
                bad.append(f"{path.relative_to(root)}:{line}: imports {target}, which does not exist")
                continue
            if owner != name:
                graph[name].add(owner)
            dst_layer, dst_rank = layer(owner)
            if dst_rank > src_rank:
                bad.append(f"{path.relative_to(root)}:{line}: {src_layer} imports {target} "
                           f"({dst_layer}, a layer above it)")
    return graph, bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.append(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        found.append(sorted(group))
    return found


def test_no_import_runs_against_the_layers():
    _, bad = import_graph()
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_no_modules_import_each_other_in_a_circle():
    graph, _ = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_checks_see_function_level_imports_and_cycles(tmp_path):
    """The checker itself, on a small tree: a function-level import against the order, a
    core module importing a stage, a stage importing the CLI, and a two-module circle."""
    files = {
        "cloud3d/__init__.py": "",
        "cloud3d/names.py": "def f():\n    from capture import rec\n",
        "cloud3d/cli/__init__.py": "import baselines.report\n",
        "capture/__init__.py": "",
        "capture/rec.py": "def g():\n    from cloud3d_dataset.layout import x\n",
        "cloud3d_dataset/__init__.py": "",
        "cloud3d_dataset/layout.py": "from . import other\n",
        "cloud3d_dataset/other.py": "def h():\n    import cloud3d_dataset.layout\n",
        "analysis/__init__.py": "",
        "models/__init__.py": "from cloud3d.cli import main\n",
        "baselines/__init__.py": "",
        "baselines/report.py": "from analysis import x\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph, bad = import_graph(tmp_path)
    assert sorted(b.split(":")[0] for b in bad) == [
        "capture/rec.py", "cloud3d/names.py", "models/__init__.py"]
    assert cycles(graph) == [["cloud3d_dataset.layout", "cloud3d_dataset.other"]]


def _string_targets(path: Path) -> list[str]:
    """Modules a package names as strings: its lazy-export table (``lazy_exports(__name__,
    {name: "module" | "module:attr"})``) and a ``COMMAND_MODULES`` tuple."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "lazy_exports":
            table = node.args[1]
            out += [v.value.split(":")[0] for v in table.values if isinstance(v, ast.Constant)]
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMMAND_MODULES"
                                                for t in node.targets):
            out += [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
    return out


def test_modules_named_as_strings_keep_the_layers_too():
    """A stage's face exports only its own modules (nothing from a later stage, nothing from
    the CLI), and every module named that way exists; the CLI's command list names only
    stage command modules."""
    known = modules()
    seen = 0
    for name, path in known.items():
        for target in _string_targets(path):
            seen += 1
            assert target in known, f"{name} names {target}, which is no module"
            (_, rank), (_, trank) = layer(name), layer(target)
            assert trank <= rank, f"{name} names {target}, a later layer"
            if name in PACKAGES and name != "cloud3d":
                assert target.split(".")[0] == name, f"the face of {name} exports {target}"
    assert seen > 30  # the five faces and the command list were read
