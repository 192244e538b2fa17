"""No function in the packages runs over 80 lines unless it says why.

A newcomer reads a function in one screen or two; past that, named steps read better. A
function may stay long when splitting would hurt (a linear parser whose checks must stay in
one visible order, say): it then states why in a comment right after its ``def`` line (or as
the first line of its body), starting ``# long:``.

The count runs from the ``def`` line (decorators excluded) to the function's last line, so a
docstring counts too. Nested functions are measured on their own as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cloud3d", "capture", "cloud3d_dataset", "analysis", "baselines", "models", "benchmarks")
LIMIT = 80


def _has_reason(lines: list[str], fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True when a ``# long: REASON`` comment sits between the def line and the body's first
    statement (after a signature split over several lines too), or is the first body line."""
    first = fn.body[0]
    start = fn.lineno  # 1-based: lines[start] is the line after the def line
    end = first.end_lineno if isinstance(first, ast.Expr) and isinstance(
        getattr(first, "value", None), ast.Constant) else first.lineno
    for text in lines[start:end + 1]:
        stripped = text.strip()
        if stripped.startswith("# long:") and len(stripped) > len("# long:") + 3:
            return True
    return False


def long_functions(root: Path = ROOT, limit: int = LIMIT) -> list[str]:
    """``path:line name (N lines)`` for each function over ``limit`` lines with no ``# long:`` reason."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            for node in ast.walk(ast.parse(text, filename=str(path))):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                length = node.end_lineno - node.lineno + 1
                if length > limit and not _has_reason(lines, node):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_runs_over_80_lines_without_a_reason():
    found = long_functions()
    assert not found, (
        "split these into named steps, or state why one stays long with a '# long: REASON' "
        "comment after its def line:\n  " + "\n  ".join(found))


def test_the_check_sees_a_long_function_and_its_reason(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    pkg = tmp_path / "models"
    pkg.mkdir()
    (pkg / "long.py").write_text(f"def f(\n    a,\n):\n{body}\n", encoding="utf-8")
    assert [s.split(" ")[1] for s in long_functions(tmp_path)] == ["f"]
    (pkg / "long.py").write_text(
        f"def f(\n    a,\n):\n    # long: one linear parse, checks in file order\n{body}\n", encoding="utf-8")
    assert long_functions(tmp_path) == []
    (pkg / "long.py").write_text(f"def f(a):\n    # long:\n{body}\n", encoding="utf-8")
    assert len(long_functions(tmp_path)) == 1, "a bare '# long:' with no reason is not a reason"
