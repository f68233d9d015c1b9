"""Run the workflow's jobs on a machine without Snakemake and dlib (the lent GPU machine).

The plan (``python -m maskprivacy_workflow.plan export``, made where Snakemake is) lists the Snakefile's
jobs with their inputs, outputs and params; ``python -m maskprivacy_workflow.plan run`` runs each rule's
own script (its options, such as ``--jobs`` and ``--timings``, pass through). The one difference
from a Snakemake run: ``align`` takes each face from a cache made by
``benchmarks/landmarks_cache.py`` (the stage's own detection, run where dlib is) instead of
calling dlib.

    python -m maskprivacy_workflow.plan export --configfile presets/utkface.yaml --cores 16 -o plan.json
    python benchmarks/landmarks_cache.py ../shared/data/UTKFace.tar.gz landmarks.npz
    # on the GPU machine, with the archive at the preset's download.path (data/UTKFace.tar.gz):
    python benchmarks/utkface_gpu.py plan.json landmarks.npz --jobs 16 --set train.epochs=30

With ``split.group_by: identity`` (a plan exported with ``--configfile presets/identity.yaml``
too), ``identity`` likewise takes each face's descriptor from ``--descriptors``, a cache made by
``benchmarks/identity_cache.py`` from a run here.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from maskprivacy_workflow import plan


def _load(name: str):
    """A module of benchmarks/ by name (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Every other option is `python -m maskprivacy_workflow.plan run`'s: --jobs, --gpus, --set, "
        "--timings, --root, --dry-run.",
    )
    ap.add_argument("plan", type=Path)
    ap.add_argument("landmarks", type=Path, help="cache made by benchmarks/landmarks_cache.py")
    ap.add_argument(
        "--descriptors", type=Path, default=None, help="cache made by benchmarks/identity_cache.py"
    )
    args, run_options = ap.parse_known_args(argv)
    n = len(_load("landmarks_cache").install(args.landmarks))
    print(f"align takes its faces from {args.landmarks} ({n} files)", flush=True)
    if args.descriptors:
        n = _load("identity_cache").install(args.descriptors)
        print(f"identity takes its descriptors from {args.descriptors} ({n} faces)", flush=True)
    return plan.main(["run", str(args.plan), *run_options])


if __name__ == "__main__":
    sys.exit(main())
