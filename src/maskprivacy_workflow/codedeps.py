"""The code a stage computes with: the package modules its workflow script reaches by import.

Both runners rerun a stage when these change, because the Snakefile makes them rule inputs
(``code=stage_code(...)`` in ``workflow/rules/common.smk``): Snakemake sees a newer input whose
checksum differs, and ``dvc.yaml``, generated from the Snakefile, lists them as ``deps``. Neither
runner sees a package module otherwise: Snakemake's own code trigger watches the script file only.

Modules in :data:`RESULT_NEUTRAL` cannot change a result (logging, progress bars, atomic writes,
full-disk messages, the worker pool, the stage entry): they are neither listed nor followed, so editing them
reruns nothing. Keep it that way: whatever shapes an output's content goes elsewhere.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = "maskprivacy"
# paths under src/: how a stage logs, writes atomically and is entered, never what it computes
RESULT_NEUTRAL = frozenset(
    {
        "maskprivacy/core/logs.py",
        "maskprivacy/core/plumbing.py",
        "maskprivacy/core/pool.py",
        "maskprivacy/stages/entry.py",
    }
)


def stage_code(root: str | Path, script: str | Path, include_neutral: bool = False) -> list[str]:
    """The package modules ``script`` imports, directly or through other package modules,
    result-neutral ones left out and not followed (unless ``include_neutral``: every module the
    script's process loads, as its conda env must hold their imports), as sorted paths relative
    to ``root``.

    Any import form counts (``import maskprivacy.x.y``, ``from maskprivacy.x import y`` where
    ``y`` is a module or a name, ``from . import y``, ``from .y import z``); an import inside a
    function counts too. Package ``__init__`` files are not listed (they hold no code).
    """
    root = Path(root)
    src = root / "src"
    seen: set[Path] = set()
    todo = [root / script]
    while todo:
        path = todo.pop()
        for mod in imports(path, src):
            f = module_file(src, mod)
            if f is None or f in seen:
                continue
            if not include_neutral and f.relative_to(src).as_posix() in RESULT_NEUTRAL:
                continue
            seen.add(f)
            todo.append(f)
    return sorted(f.relative_to(root).as_posix() for f in seen)


def imports(path: Path, src: Path) -> list[str]:
    """Dotted names of what ``path`` imports from the package (modules or names in them)."""
    # every rule's inputs are computed when the Snakefile is read: parse each module once
    return list(_imports(str(path), path.stat().st_mtime_ns, str(src)))


@functools.lru_cache(maxsize=1024)
def _imports(file: str, mtime_ns: int, src_dir: str) -> tuple[str, ...]:
    path, src = Path(file), Path(src_dir)
    tree = ast.parse(path.read_text(), str(path))
    try:
        here = ".".join(path.relative_to(src).with_suffix("").parts)
    except ValueError:
        here = ""
    if path.name == "__init__.py":  # a package's own name: `from . import x` is relative to it
        here += ".__init__"
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = here.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            out.append(base)
            out += [f"{base}.{a.name}" for a in node.names]
    return tuple(m for m in out if m == PACKAGE or m.startswith(PACKAGE + "."))


def module_file(src: Path, dotted: str) -> Path | None:
    """The .py file of a dotted module name under src/, or None (a package, or a name)."""
    f = src.joinpath(*dotted.split(".")).with_suffix(".py")
    return f if f.is_file() else None
