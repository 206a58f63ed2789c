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
def source_fingerprint(*roots: Path, exclude: tuple[str, ...] = ()) -> str:
    """A hash of every source file under `roots` (folders or files), by relative name and normal form: it changes
    when code that can change a number changes, not when a comment, a docstring or the formatting does. `exclude`:
    paths relative to a root folder (files or folders) left out."""
    h = hashlib.sha1()
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.suffix in SOURCE_SUFFIXES) if root.is_dir() else [root]
        if root.is_dir():
            files = [p for p in files if not _under(p.relative_to(root), exclude)]
        for path in files:
            h.update(f"{path.relative_to(root.parent)}\0".encode() + _normal_form(path) + b"\0")
    return h.hexdigest()[:16]


def _under(rel: Path, exclude: tuple[str, ...]) -> bool:
    return any(rel == Path(e) or Path(e) in rel.parents for e in exclude)


# What cannot change a trained generator's weights: scoring (training draws from its own generators, and validation
# from seeds of its own), plotting, sampling, configuration files and the command lines. The code fingerprint of a
# run leaves them out, so a change there re-scores an evaluation's runs from their checkpoints instead of re-training.
NOT_TRAINING = (
    "evaluation",
    "plots.py",
    "sampling.py",
    "train.py",
    "cli.py",
    "configs",
    "tomlfile.py",
    "provenance.py",
)


def training_fingerprint(*extra: Path) -> str:
    """The fingerprint of the code that trains (the core less NOT_TRAINING, and `extra` files)."""
    return source_fingerprint(PACKAGE, *extra, exclude=NOT_TRAINING)
