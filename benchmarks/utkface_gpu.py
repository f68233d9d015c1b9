"""Run the workflow's jobs on a machine without Snakemake and dlib (the lent GPU machine).

The plan (``python -m maskprivacy.plan export``, made where Snakemake is) lists the Snakefile's
jobs with their inputs, outputs and params; :func:`maskprivacy.plan.run` runs each rule's own
script in turn. The one difference from a Snakemake run: ``align`` takes each face from a cache
made by ``benchmarks/landmarks_cache.py`` (the stage's own detection, run where dlib is) instead
of calling dlib. Seconds per job go to ``--timings``.

    python -m maskprivacy.plan export --configfile presets/utkface.yaml --cores 16 -o plan.json
    python benchmarks/landmarks_cache.py ../shared/data/UTKFace.tar.gz landmarks.npz
    # on the GPU machine, with the archive at the preset's download.path (data/UTKFace.tar.gz):
    python benchmarks/utkface_gpu.py plan.json landmarks.npz --jobs 16 --set train.epochs=30
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from maskprivacy import plan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plan", type=Path)
    ap.add_argument("landmarks", type=Path, help="cache made by benchmarks/landmarks_cache.py")
    ap.add_argument("--root", type=Path, default=Path("."), help="folder the plan's paths are in")
    ap.add_argument("--set", action="append", default=[], help="override: train.epochs=12")
    ap.add_argument("--timings", type=Path, default=None, help="write seconds per job (JSON)")
    ap.add_argument("--jobs", type=int, default=1, help="jobs at once (forked processes)")
    ap.add_argument("--gpus", type=int, default=1, help="GPUs: gpu=1 jobs at once")
    args = ap.parse_args(argv)
    spec = importlib.util.spec_from_file_location(
        "landmarks_cache", Path(__file__).with_name("landmarks_cache.py")
    )
    cache = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cache)
    n = len(cache.install(args.landmarks))
    print(f"align takes its faces from {args.landmarks} ({n} files)", flush=True)
    p = plan.apply_overrides(json.loads(args.plan.read_text()), args.set, args.root)
    seconds = plan.run(p, args.root, jobs=args.jobs, gpus=args.gpus)
    print(json.dumps(seconds))
    if args.timings:
        args.timings.write_text(json.dumps(seconds, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
