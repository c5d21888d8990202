#!/usr/bin/env python3
"""Check the size limits of issue 10: modules up to 800 lines, functions up to 80 lines of code.

A function's size counts the lines that hold code: blank lines, comment lines and
docstrings are left out, and so are the lines of nested functions and classes, which
are measured on their own. Declarative tables (a function that is one long literal
or a flat list of declarations) may be allowed by qualified name, each with a reason.

Usage: scripts/check_sizes.py [PATH ...]   (default: daemon simulator)
Exits 1 and lists every offender when a limit is exceeded, else 0.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 800
MAX_FUNCTION_CODE_LINES = 80

# Declarative tables that may be longer: qualified name ("package.module:Class.function")
# -> why it reads best as one piece. Logic never goes here; split it instead.
ALLOWED: dict[str, str] = {
    "daemon.ops.metrics:Metrics.__init__": (
        "the catalogue of every metric the daemon keeps, one declaration after another, "
        "so /metrics is described in one place"
    ),
}

_Scope = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _code_lines(source: str) -> set[int]:
    """Line numbers that carry a token other than a comment, newline or indentation."""
    skip = {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
    }
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in skip:
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def _docstring_lines(node: _Function) -> set[int]:
    """Lines of the function's docstring, if it has one."""
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        end = first.end_lineno or first.lineno
        return set(range(first.lineno, end + 1))
    return set()


def _span(node: _Scope) -> set[int]:
    """Every line of a function or class, its decorators included."""
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return set(range(start, (node.end_lineno or node.lineno) + 1))


_Function = ast.FunctionDef | ast.AsyncFunctionDef


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, _Function, list[_Scope]]]:
    """Each function with its qualified name and every function or class nested in it."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{node.name}"
            if isinstance(node, ast.ClassDef):
                yield from _functions(node, f"{name}.")
            else:
                nested = [
                    n
                    for n in ast.walk(node)
                    if n is not node
                    and isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                ]
                yield name, node, nested
                yield from _functions(node, f"{name}.")
        else:
            yield from _functions(node, prefix)


def _module_name(path: Path) -> str:
    """The dotted import name, from the packages (folders with `__init__.py`) around it."""
    path = path.resolve()
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


def check_file(path: Path, seen: dict[str, int] | None = None) -> list[str]:
    """Every limit the file exceeds, one line each; `seen` collects each function's size."""
    source = path.read_text(encoding="utf-8")
    problems: list[str] = []
    total = len(source.splitlines())
    if total > MAX_MODULE_LINES:
        problems.append(f"{path}: module has {total} lines (limit {MAX_MODULE_LINES})")
    tree = ast.parse(source, filename=str(path))
    code = _code_lines(source)
    module = _module_name(path)
    for name, node, nested in _functions(tree):
        lines = _span(node) & code
        lines -= _docstring_lines(node)
        for inner in nested:
            lines -= _span(inner)
        qualified = f"{module}:{name}"
        if seen is not None:
            seen[qualified] = len(lines)
        if len(lines) > MAX_FUNCTION_CODE_LINES and qualified not in ALLOWED:
            problems.append(
                f"{path}:{node.lineno}: {name} has {len(lines)} lines of code "
                f"(limit {MAX_FUNCTION_CODE_LINES})"
            )
    return problems


def _stale(seen: dict[str, int]) -> list[str]:
    """Allow-list entries for checked modules that are gone or now within the limit."""
    modules = {name.split(":")[0] for name in seen}
    out = []
    for name in sorted(ALLOWED):
        if name.split(":")[0] not in modules:
            continue  # its module was not among the paths checked
        if name not in seen:
            out.append(f"allow-list: {name} no longer exists; remove its entry")
        elif seen[name] <= MAX_FUNCTION_CODE_LINES:
            out.append(f"allow-list: {name} is within the limit now; remove its entry")
    return out


def _python_files(roots: list[str]) -> Iterator[Path]:
    for root in roots:
        base = Path(root)
        if base.is_file():
            yield base
        else:
            yield from sorted(p for p in base.rglob("*.py") if ".venv" not in p.parts)


def main(argv: list[str]) -> int:
    """Check every Python file under the given roots; 1 when any limit is exceeded."""
    roots = argv or ["daemon", "simulator"]
    seen: dict[str, int] = {}
    files = list(_python_files(roots))
    problems = [problem for path in files for problem in check_file(path, seen)]
    problems += _stale(seen)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} size problem(s)", file=sys.stderr)
        return 1
    allowed = sum(1 for name in ALLOWED if name in seen)
    print(
        f"ok: {len(files)} modules, {len(seen)} functions within {MAX_MODULE_LINES} lines a "
        f"module and {MAX_FUNCTION_CODE_LINES} lines of code a function "
        f"({allowed} declarative table(s) allowed)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
