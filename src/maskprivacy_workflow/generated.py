"""The command line of a generated file (dvc.yaml, docs/parameters.md): write it, or with
``--check`` exit 1 when the committed file no longer matches what would be written."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def main(
    argv: list[str] | None,
    *,
    doc: str,
    module: str,
    target: str,
    render: Callable[[Path], str],
    stale: str,
    fresh: str,
) -> int:
    """``target`` (relative to ``--root``) written from ``render(root)``, or checked with
    ``--check``; ``stale`` says what it no longer matches, ``fresh`` what it is up to date with."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: here)")
    ap.add_argument("--check", action="store_true", help=f"exit 1 if {target} is not up to date")
    args = ap.parse_args(argv)
    root = args.root.resolve()
    text = render(root)
    path = root / target
    if args.check:
        current = path.read_text() if path.exists() else ""
        if current != text:
            print(
                f"{target} is stale: {stale}.\n"
                f"Regenerate it with `python -m {module}` and commit the result.",
                file=sys.stderr,
            )
            return 1
        print(f"{target} is up to date with {fresh}")
        return 0
    from maskprivacy.core.io import write_text

    write_text(path, text)
    print(f"wrote {path}")
    return 0
