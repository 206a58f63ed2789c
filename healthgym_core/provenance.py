"""Which code made a result: a fingerprint of source files that ignores comments, docstrings and layout."""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
SOURCE_SUFFIXES = (".py", ".cpp", ".h")


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            value = body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _normal_form(path: Path) -> bytes:
    """Python as its syntax tree without docstrings (what runs); other sources as they are."""
    if path.suffix != ".py":
        return path.read_bytes()
    return ast.dump(_without_docstrings(ast.parse(path.read_bytes(), filename=str(path)))).encode()


@cache
def source_fingerprint(*roots: Path) -> str:
    """A hash of every source file under `roots` (folders or files), by relative name and normal form: it changes
    when code that can change a number changes, not when a comment, a docstring or the formatting does."""
    h = hashlib.sha1()
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES) if root.is_dir() else [root]
        for path in files:
            h.update(f"{path.relative_to(root.parent)}\0".encode() + _normal_form(path) + b"\0")
    return h.hexdigest()[:16]
