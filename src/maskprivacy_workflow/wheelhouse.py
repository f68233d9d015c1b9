"""Snakemake for a machine without internet (a lent GPU node): a wheelhouse made here, installed there.

The node runs the same Snakefile with the same Snakemake. Here, where PyPI is reachable, this
writes ``requirements.txt`` (Snakemake, the executor plugins the profiles name, and everything
they need, pinned at the versions installed here) into a folder and fetches their wheels into it
(``pip wheel --no-deps``: ``pip download``, and a wheel built where PyPI has only a source
archive, as for ``connection-pool``, so the node builds nothing). Make it with the node's Python
version and platform (a wheel built here is for this machine's). ``pulp`` (Snakemake's ILP scheduler, with a solver binary) is left out
unless ``--with-pulp``: run Snakemake with ``--scheduler greedy`` instead. The node needs the
package's own dependencies (PyTorch, ...) already; this adds only the engine.

    python -m maskprivacy_workflow.wheelhouse .gpu/wheels          # here (make wheelhouse)
    python -m venv --system-site-packages smk                      # there, offline
    smk/bin/pip install --no-index --find-links .gpu/wheels --no-deps -r .gpu/wheels/requirements.txt
    smk/bin/snakemake --cores all --scheduler greedy

(``--no-deps`` because the list is already complete, pulp aside.) ``--extra dlib-bin`` adds dlib
for the ``identity`` stage (``split.group_by: identity``) on a node that lacks it; its descriptor
network (``dlib_face_recognition_resnet_model_v1.dat``, 22 MB) is carried too and named by
``identity.model``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LEFT_OUT = frozenset({"pulp"})  # snakemake --scheduler greedy needs no ILP solver


def roots(root: Path, executors: bool = True) -> list[str]:
    """Snakemake and the executor plugin of every profile under ``root/profiles`` (none when not
    ``executors``: a node that runs jobs itself, as the GPU session does)."""
    plugins = set()
    for config in sorted((root / "profiles").glob("*/config.yaml")):
        executor = (yaml.safe_load(config.read_text()) or {}).get("executor")
        if executor and executor not in ("local", "dryrun", "touch"):
            plugins.add(f"snakemake-executor-plugin-{executor}")
    return ["snakemake", *sorted(plugins)] if executors else ["snakemake"]


def needs(dist: str) -> list[str]:
    """The distributions ``dist`` requires here (markers evaluated for this Python and platform,
    no extras), canonical names."""
    out = []
    for spec in md.distribution(dist).requires or []:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(canonicalize_name(req.name))
    return out


def requirements(names: list[str], with_pulp: bool = False) -> dict[str, str]:
    """Canonical name -> installed version of ``names`` and all they need, transitively."""
    left_out = set() if with_pulp else LEFT_OUT
    found: dict[str, str] = {}
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in found or name in left_out:
            continue
        found[name] = md.version(name)
        todo += needs(name)
    return dict(sorted(found.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="where requirements.txt and the wheels go")
    ap.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (profiles/)")
    ap.add_argument("--with-pulp", action="store_true", help="keep pulp (the ILP scheduler)")
    ap.add_argument(
        "--no-executors",
        action="store_true",
        help="leave the profiles' executor plugins out (a node that runs its jobs itself)",
    )
    ap.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="DIST",
        help="also carry this installed distribution and what it needs (e.g. dlib-bin, for the "
        "identity stage on a node without dlib; repeatable)",
    )
    ap.add_argument("pip_args", nargs="*", help="after --: more `pip wheel` options")
    args = ap.parse_args(argv)
    pins = requirements([*roots(args.root, not args.no_executors), *args.extra], args.with_pulp)
    args.folder.mkdir(parents=True, exist_ok=True)
    listing = args.folder / "requirements.txt"
    listing.write_text("".join(f"{n}=={v}\n" for n, v in pins.items()))
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(args.folder)]
    cmd += ["-r", str(listing), *args.pip_args]
    print(f"{len(pins)} distributions -> {listing}", file=sys.stderr)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
