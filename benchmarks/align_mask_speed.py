"""Speed of the pipeline's align + mask against bare dlib on the same images, per core.

Takes the first ``--n`` images by sha1 of their bytes (of a folder or a .tar/.tar.gz/.zip of
images), then measures, in this process and one core unless said otherwise:

- **bare dlib**: what a dlib user does for each image: the frontal detector at upsample 0 on
  the RGB array and the 68-point predictor on the largest face; timed on decoded arrays
  (``detect+landmarks``) and with the JPEG decode included (``+decode``);
- **pipeline**: the ``align`` then the ``mask`` stage (:mod:`maskprivacy.stages`) with one
  thread (then two), as the workflow's rules run them, with the ``align`` and ``mask`` params of ``--params``:
  decode, detection cascade, landmarks, warp, JPEG write, then read back, mask, geometry check,
  JPEG write, tables and contact sheet. Rate = input images / wall time of both stages;
- on 2 cores, the same as a pool of 2 workers inside one job (``threads=2``) and as 2 shard jobs
  in parallel processes (``align.shards: 2``, what ``snakemake --cores 2`` runs);
- the mask stage alone for each mask type (``--per-type``);
- align + mask, 1 core, with ``align.detector`` set to the HOG cascade alone and to the cascade
  with the CNN fallback, each repeat a bare dlib run and then one of each: images per second, the
  median ratio to bare dlib of the back-to-back pairs, coverage (the share of images aligned)
  and the steps that found the faces (``--no-detectors`` skips it);
- the ``identity`` stage (dlib's 128-D face descriptor of each aligned face, for
  ``split.group_by: identity``) on the faces the best pipeline run aligned, 1 core
  (``--no-identity`` skips it);
- after each repeat, what creating and writing a file costs on the disk of the work folder (the
  pipeline writes two per face; on this project's VM it swings between 0.05 and 1 ms).

Each measurement is repeated ``--repeat`` times, bare and pipeline alternating, and the best
(least disturbed) run is reported, with the load average, since a shared machine drifts. The
ratio compares the pipeline with bare ``detect+landmarks`` measured in the same run; it is
also given by CPU seconds (this process's, and the CNN helper's for the pipeline), which other
jobs on a shared machine change far less than wall time, and as the median of each repeat's
back-to-back pair: a VM whose speed swings from one run to the next does not slow bare dlib
(mostly the HOG detector) and the pipeline (mostly the 68-point predictor, memory-bound) alike.

    python benchmarks/align_mask_speed.py ../shared/data/UTKFace.tar.gz --n 1000 \\
        --params presets/utkface.yaml --json results/bench/align_mask_speed.json
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from maskprivacy.datasets.archives import read_files  # noqa: E402
from maskprivacy.faces import detect as faces  # noqa: E402
from maskprivacy.faces import identity  # noqa: E402
from maskprivacy.faces.cnn import cpu_seconds  # noqa: E402
from maskprivacy.masks.geometry import MASK_TYPES  # noqa: E402
from maskprivacy.masks.sets import set_params  # noqa: E402
from maskprivacy.stages import align, mask  # noqa: E402
from maskprivacy.stages import identity as identity_stage  # noqa: E402
from maskprivacy.stages.entry import Compute, Files, StageConfig  # noqa: E402

SUFFIXES = (".jpg", ".jpeg", ".png")
MASKTHEFACE_IMG_S = 32.0  # peers, measured on the same 1,000 files on one core (issue 4)
PAPER_CODE_IMG_S = 58.0


def first_by_sha1(source: Path, n: int, dest: Path) -> list[str]:
    """Write the first ``n`` images of ``source`` by sha1 of their bytes into ``dest``."""
    items = [
        (hashlib.sha1(data).hexdigest(), name, data)
        for name, data in read_files(
            source, lambda b: b.lower().endswith(SUFFIXES) and not b.startswith(".")
        )
    ]
    items.sort()
    dest.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    for _, name, data in items:
        if len(names) == n:
            break
        if name in names:  # same name twice in the source: keep the first
            continue
        (dest / name).write_bytes(data)
        names.append(name)
    return names


def bare_dlib(paths: list[Path], predictor: str | None) -> dict[str, float]:
    """Seconds for bare dlib: detect (upsample 0, RGB) + landmarks, with and without decode."""
    det, sp = faces.models(predictor)
    t0 = time.perf_counter()
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    t_decode = time.perf_counter() - t0
    found = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for a in arrays:
        rects = det(a, 0)
        if len(rects):
            sp(a, max(rects, key=lambda r: r.width() * r.height()))
            found += 1
    t_dl, c_dl = time.perf_counter() - t0, time.process_time() - c0
    return {
        "detect_landmarks_s": t_dl,
        "detect_landmarks_cpu_s": c_dl,
        "decode_s": t_decode,
        "found": found,
    }


def bare_dlib_2cores(paths: list[Path], predictor: str | None) -> float:
    """Wall seconds for bare dlib (decode + detect + landmarks) on 2 forked processes."""
    import multiprocessing as mp

    faces.models(predictor)  # loaded before the fork, as the pipeline does
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=bare_dlib, args=(paths[i::2], predictor)) for i in (0, 1)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - t0


def stage(
    run, cfg: dict[str, Any], inputs: Files, outputs: Files, threads: int = 1, shard=0, extra=None
):
    """One job of a stage, entered as its rule's script enters it (no report, no log file)."""
    config = StageConfig(
        params=cfg, extra=extra or {}, wildcards={"shard": str(shard)}, compute=Compute(threads)
    )
    return run(config, inputs, outputs, logging.getLogger("bench"))


def mask_stage(cfg: dict[str, Any], aligned: Path, out: Path, threads: int = 1, shard=0):
    """One ``mask`` job on the faces aligned in ``aligned``, into ``out``: the mask params of one
    set (``cfg["types"]``: its types, as :func:`maskprivacy.masks.sets.set_params` gives them)."""
    return stage(
        mask.run,
        {k: v for k, v in cfg.items() if k != "types"},
        Files(images=aligned / "images", landmarks=aligned / "landmarks.csv"),
        Files(
            images=out / "images",
            masks=out / "masks.csv",
            rejects=out / "rejects.csv",
            sheet=out / "contact_sheet.png",
        ),
        threads,
        shard,
        {"maskset": {"bench": cfg["types"]}},
    )


def align_and_mask(
    images: Path,
    manifest: Path,
    out: Path,
    params: dict[str, Any],
    threads: int = 1,
    shard: int = 0,
    shards: int = 1,
) -> dict[str, Any]:
    """One ``align`` job then one ``mask`` job (of ``shard``), as the rules run them, into ``out``
    (a fresh folder); seconds of each, their summaries, and ``out`` (for the per-type runs)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    a = stage(
        align.run,
        {**params["align"], "shards": shards},
        Files(images=images, manifest=manifest, landmarks=params["align"].get("landmarks") or []),
        Files(
            images=out / "align/images",
            landmarks=out / "align/landmarks.csv",
            rejects=out / "align/rejects.csv",
        ),
        threads,
        shard,
    )
    t1 = time.perf_counter()
    first = next(iter(params["mask"]["sets"]))  # the first mask set
    m = mask_stage(set_params(params["mask"], first), out / "align", out / "mask", threads, shard)
    t2, c2 = time.perf_counter(), cpu_seconds()
    return {
        "align_s": t1 - t0,
        "mask_s": t2 - t1,
        "cpu_s": c2 - c0,
        "align": a,
        "mask": m,
        "work": out,
    }


class Scratch:
    """Fresh output folders under ``base``; none is deleted while the benchmark runs.

    Deleting thousands of files just before a timed run slows that run's file creation here
    (ext4 mounted with ``discard``: a create costs 0.05 ms normally and up to 1 ms while the
    freed blocks are being discarded), so every timed run writes into a folder of its own and
    all of them go at the end, with the benchmark's temporary folder, after the timing.
    """

    def __init__(self, base: Path):
        self.base, self.k = base, 0

    def fresh(self, label: str) -> Path:
        self.k += 1
        return self.base / f"{self.k:02d}_{label}"


def file_create_ms(folder: Path, n: int = 200, size: int = 15_000) -> float:
    """Milliseconds to create and write one file of ``size`` bytes (an aligned face's JPEG) in
    a fresh ``folder``: the disk's share of the pipeline, which writes two files per face."""
    folder.mkdir(parents=True)
    data = os.urandom(size)
    t0 = time.perf_counter()
    for i in range(n):
        with open(folder / f"{i:05d}.jpg", "wb") as f:
            f.write(data)
    return (time.perf_counter() - t0) / n * 1e3


def _shard_job(images: Path, manifest: Path, work: Path, params: dict[str, Any], k: int, n: int):
    """What one ``align`` job then one ``mask`` job of shard ``k`` of ``n`` do, in a process."""
    align_and_mask(images, manifest, work / str(k), params, shard=k, shards=n)


def pipeline_shards(
    images: Path, manifest: Path, work: Path, params: dict[str, Any], shards: int
) -> float:
    """Wall seconds for ``shards`` shard jobs (align then mask) in parallel processes, as
    ``snakemake --cores N`` runs them with ``align.shards: N``."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    procs = [
        ctx.Process(target=_shard_job, args=(images, manifest, work, params, k, shards))
        for k in range(shards)
    ]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"shard job failed with exit code {p.exitcode}")
    return time.perf_counter() - t0


def mask_only(work: Path, out: Path, params: dict[str, Any], mask_type: str) -> float:
    """Seconds for the mask stage alone with one ``mask_type``, on the faces aligned in
    ``work``, into ``out`` (a fresh folder)."""
    cfg = {**set_params(params["mask"], next(iter(params["mask"]["sets"]))), "types": mask_type}
    t0 = time.perf_counter()
    mask_stage(cfg, work / "align", out)
    return time.perf_counter() - t0


def identity_speed(
    pipe: dict[str, Any], scratch: Scratch, params: dict[str, Any], repeat: int
) -> dict[str, Any]:
    """The identity stage (as its rule runs it) on the faces ``pipe`` aligned,
    one core, best of ``repeat``: descriptors per second and the cost against align + mask."""
    cfg = params.get("identity", {})
    identity._model(str(identity.model_path(cfg)))  # model loading is not per-image work
    work = pipe["work"] / "align"
    times, summary = [], {}
    for _ in range(max(1, repeat)):
        out = scratch.fresh("identity")
        t0 = time.perf_counter()
        summary = stage(
            identity_stage.run,
            cfg,
            Files(images=work / "images", landmarks=work / "landmarks.csv"),
            Files(descriptors=out / "d.csv", rejects=out / "r.csv"),
        )
        times.append(time.perf_counter() - t0)
    n = max(summary["n_inputs"], 1)
    per_face = min(times) / n
    pipe_per_face = (pipe["align_s"] + pipe["mask_s"]) / max(pipe["align"]["n_inputs"], 1)
    return {
        "identity_img_s": 1 / per_face,
        "identity_ms_per_face": 1000 * per_face,
        "identity_faces": summary["n_inputs"],
        "identity_rejects": summary["n_rejects"],
        "identity_cost_over_align_mask": per_face / pipe_per_face,
    }


def paired(bare_runs: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, list]:
    """Each repeat's pipeline run against the bare dlib run just before it: the ratios by wall
    time (``ratio_paired``) and by CPU time (``ratio_paired_cpu``), sorted."""
    pairs = list(zip(bare_runs, runs, strict=True))
    return {
        "ratio_paired": sorted(
            round(b["detect_landmarks_s"] / (r["align_s"] + r["mask_s"]), 3) for b, r in pairs
        ),
        "ratio_paired_cpu": sorted(
            round(b["detect_landmarks_cpu_s"] / r["cpu_s"], 3) for b, r in pairs
        ),
    }


DETECTORS = ("cascade", "cascade+cnn")  # align.detector: the HOG cascade alone, with the CNN


def detector_speeds(
    images: Path,
    manifest: Path,
    scratch: Scratch,
    params: dict[str, Any],
    repeat: int,
    paths: list[Path],
) -> dict[str, dict[str, Any]]:
    """align + mask, 1 core, on the same images with each ``align.detector`` of
    :data:`DETECTORS`, each repeat running bare dlib and then each detector back to back:
    images per second (best of ``repeat``), the ratio to bare dlib of each repeat's pair (by
    wall time, and by CPU time with the CNN helper's included; the median is the figure), the
    share of images aligned and the steps that found the faces."""
    predictor = params["align"].get("predictor") or None
    faces.load_models(predictor, "cascade+cnn")  # not per image
    runs: dict[str, list[dict[str, Any]]] = {det: [] for det in DETECTORS}
    bare_runs = []
    for _ in range(max(1, repeat)):
        bare_runs.append(bare_dlib(paths, predictor))
        for det in DETECTORS:
            run = {**params, "align": {**params["align"], "detector": det}}
            runs[det].append(
                align_and_mask(images, manifest, scratch.fresh(det.replace("+", "_")), run)
            )
    out = {}
    for det in DETECTORS:
        best = min(runs[det], key=lambda r: r["align_s"] + r["mask_s"])
        n = best["align"]["n_inputs"]
        out[det] = {
            "img_s": n / (best["align_s"] + best["mask_s"]),
            "cpu_img_s": n / min(r["cpu_s"] for r in runs[det]),
            **paired(bare_runs, runs[det]),
            "aligned_fraction": best["align"]["n_aligned"] / max(n, 1),
            "found_by": best["align"]["found_by"],
            "rejects_by_reason": best["align"]["rejects_by_reason"],
        }
        out[det]["ratio_to_bare"] = float(np.median(out[det]["ratio_paired"]))
        out[det]["ratio_to_bare_cpu"] = float(np.median(out[det]["ratio_paired_cpu"]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="folder or archive of images")
    ap.add_argument("--n", type=int, default=1000, help="first N images by sha1 (default 1000)")
    ap.add_argument("--params", type=Path, default=Path("presets/utkface.yaml"))
    ap.add_argument(
        "--types", default=None, help="mask.sets as one set of these types: a name or a,b,c"
    )
    ap.add_argument("--repeat", type=int, default=2, help="runs of each measurement (best kept)")
    ap.add_argument("--no-2cores", action="store_true", help="skip the 2-core runs")
    ap.add_argument("--per-type", action="store_true", help="also time the mask stage per type")
    ap.add_argument("--no-identity", action="store_true", help="skip the identity stage's run")
    ap.add_argument(
        "--no-detectors",
        action="store_true",
        help="skip align + mask with the HOG cascade alone and with the CNN fallback",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("--keep", type=Path, default=None, help="keep the outputs in this folder")
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the timed runs write (default: the system's temporary folder); pass a "
        "folder on the disk that holds data/ to time the disk the pipeline really writes to",
    )
    args = ap.parse_args(argv)

    params = yaml.safe_load(args.params.read_text())
    if args.types:
        params["mask"]["sets"] = {"masked": dict.fromkeys(args.types.split(","), 1.0)}
    predictor = params["align"].get("predictor") or None
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="align_mask_speed.", dir=args.workdir))
    try:
        images = tmp / "images"
        names = first_by_sha1(args.source, args.n, images)
        manifest = tmp / "manifest.csv"
        pd.DataFrame({"file": names}).to_csv(manifest, index=False)
        paths = [images / f for f in names]
        n = len(names)
        faces.models(predictor)  # model loading is not per-image work
        scratch = Scratch(args.keep or tmp / "work")  # --keep: every run's outputs stay there

        bare_runs, pipe_runs, create_ms = [], [], []
        for _ in range(max(1, args.repeat)):
            bare_runs.append(bare_dlib(paths, predictor))
            pipe_runs.append(align_and_mask(images, manifest, scratch.fresh("1core"), params))
            create_ms.append(file_create_ms(scratch.fresh("disk")))
        bare = min(bare_runs, key=lambda r: r["detect_landmarks_s"])
        bare_dec = min(r["detect_landmarks_s"] + r["decode_s"] for r in bare_runs)
        pipe = min(pipe_runs, key=lambda r: r["align_s"] + r["mask_s"])
        t_pipe = pipe["align_s"] + pipe["mask_s"]
        res: dict[str, Any] = {
            "n_images": n,
            "params": str(args.params),
            "mask_sets": params["mask"]["sets"],
            "align_upsample": params["align"]["upsample"],
            "loadavg_1min": round(os.getloadavg()[0], 2),
            "cpu_count": os.cpu_count(),
            "bare_dlib_detect_landmarks_img_s": n / bare["detect_landmarks_s"],
            "bare_dlib_with_decode_img_s": n / bare_dec,
            "bare_dlib_found_fraction": bare["found"] / n,
            "pipeline_img_s": n / t_pipe,
            # CPU time (this process and the CNN helper): what a shared machine's load leaves
            # out; best of the repeats each
            "bare_dlib_cpu_img_s": n / min(r["detect_landmarks_cpu_s"] for r in bare_runs),
            "pipeline_cpu_img_s": n / min(r["cpu_s"] for r in pipe_runs),
            "pipeline_align_img_s": n / pipe["align_s"],
            "pipeline_mask_img_s": n / pipe["mask_s"],
            "ratio_pipeline_to_bare": (n / t_pipe) / (n / bare["detect_landmarks_s"]),
            "ratio_pipeline_to_bare_with_decode": (n / t_pipe) / (n / bare_dec),
            "ratio_pipeline_to_bare_cpu": min(r["detect_landmarks_cpu_s"] for r in bare_runs)
            / min(r["cpu_s"] for r in pipe_runs),
            "speedup_vs_masktheface": (n / t_pipe) / MASKTHEFACE_IMG_S,
            "masked_fraction": pipe["mask"]["n_masked"] / n,
            "routes": pipe["align"]["routes"],
            "rejects_by_reason": pipe["align"]["rejects_by_reason"],
            "geometry_pass_fraction": pipe["mask"]["geometry_pass_fraction"],
            # each repeat measures bare dlib then the pipeline back to back: the ratio of each
            # pair drifts less with a shared machine's load than the two bests do
            **paired(bare_runs, pipe_runs),
            "all_runs_s": {
                "bare_detect_landmarks": [round(r["detect_landmarks_s"], 3) for r in bare_runs],
                "pipeline": [round(r["align_s"] + r["mask_s"], 3) for r in pipe_runs],
            },
            # per repeat, in order: what the disk charged for creating a file right after it
            "file_create_ms": [round(v, 3) for v in create_ms],
        }
        if not args.no_identity:
            res.update(identity_speed(pipe, scratch, params, args.repeat))
        if not args.no_2cores:
            t2 = min(
                (
                    align_and_mask(images, manifest, scratch.fresh("2cores"), params, threads=2)
                    for _ in range(args.repeat)
                ),
                key=lambda r: r["align_s"] + r["mask_s"],
            )
            b2 = min(bare_dlib_2cores(paths, predictor) for _ in range(args.repeat))
            res["pipeline_2cores_img_s"] = n / (t2["align_s"] + t2["mask_s"])
            ts = min(
                pipeline_shards(images, manifest, scratch.fresh("2shards"), params, 2)
                for _ in range(args.repeat)
            )
            res["pipeline_2shards_img_s"] = n / ts
            res["pipeline_shards_scaling_2_over_1"] = (
                res["pipeline_2shards_img_s"] / res["pipeline_img_s"]
            )
            res["pipeline_scaling_2_over_1"] = res["pipeline_2cores_img_s"] / res["pipeline_img_s"]
            res["bare_dlib_with_decode_2cores_img_s"] = n / b2
            res["bare_dlib_scaling_2_over_1"] = (
                res["bare_dlib_with_decode_2cores_img_s"] / res["bare_dlib_with_decode_img_s"]
            )
        if not args.no_detectors:
            res["by_detector"] = detector_speeds(
                images, manifest, scratch, params, args.repeat, paths
            )
        if args.per_type:
            res["mask_stage_img_s_by_type"] = {
                t: n
                / min(
                    mask_only(pipe["work"], scratch.fresh(f"mask_{t}"), params, t)
                    for _ in range(args.repeat)
                )
                for t in MASK_TYPES
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(report(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


def report(r: dict[str, Any]) -> str:
    out = io.StringIO()
    w = out.write
    w(f"align + mask speed on {r['n_images']} images (first by sha1), params {r['params']}\n")
    w(f"mask.sets {r['mask_sets']}, align.upsample {r['align_upsample']}; ")
    w(f"load average {r['loadavg_1min']} on {r['cpu_count']} CPUs (best of repeated runs)\n\n")
    rows = [
        ("bare dlib detect(up0, RGB) + landmarks", r["bare_dlib_detect_landmarks_img_s"]),
        ("bare dlib + JPEG decode", r["bare_dlib_with_decode_img_s"]),
        ("pipeline align + mask, 1 core", r["pipeline_img_s"]),
        ("  align stage alone", r["pipeline_align_img_s"]),
        ("  mask stage alone", r["pipeline_mask_img_s"]),
    ]
    if "pipeline_2cores_img_s" in r:
        rows += [
            ("pipeline align + mask, 2 cores (pool)", r["pipeline_2cores_img_s"]),
            ("pipeline align + mask, 2 shard jobs", r["pipeline_2shards_img_s"]),
            ("bare dlib + decode, 2 cores", r["bare_dlib_with_decode_2cores_img_s"]),
        ]
    if "identity_img_s" in r:
        rows.append(("identity descriptor, 1 core", r["identity_img_s"]))
    for t, v in r.get("mask_stage_img_s_by_type", {}).items():
        rows.append((f"  mask stage, all {t}", v))
    rows += [("MaskTheFace (reference, issue 4)", MASKTHEFACE_IMG_S)]
    rows += [("authors' polygon code (reference)", PAPER_CODE_IMG_S)]
    for name, v in rows:
        w(f"  {name:42s} {v:8.1f} img/s\n")
    w("\n")
    w(f"  ratio pipeline / bare dlib detect+landmarks   {r['ratio_pipeline_to_bare']:.2f}\n")
    w(
        f"  ratio pipeline / bare dlib + decode          {r['ratio_pipeline_to_bare_with_decode']:.2f}\n"
    )
    w(f"  ratio of each back-to-back pair (sorted)     {r['ratio_paired']}\n")
    w(f"    by CPU time (sorted; median {float(np.median(r['ratio_paired_cpu'])):.2f})       ")
    w(f"{r['ratio_paired_cpu']}\n")
    w(f"  ratio by CPU time (bare {r['bare_dlib_cpu_img_s']:.1f}, pipeline ")
    w(f"{r['pipeline_cpu_img_s']:.1f} img per CPU s)     {r['ratio_pipeline_to_bare_cpu']:.2f}\n")
    n, runs = r["n_images"], r["all_runs_s"]
    w("  each repeat in order: pipeline img/s        ")
    w(f"{[round(n / t) for t in runs['pipeline']]}\n")
    w(
        f"    bare dlib img/s                            {[round(n / t) for t in runs['bare_detect_landmarks']]}\n"
    )
    w(f"    file create + write, ms (2 per face)       {r['file_create_ms']}\n")
    w(f"  pipeline / MaskTheFace                       {r['speedup_vs_masktheface']:.2f}x\n")
    if "identity_img_s" in r:
        w(f"  identity descriptor: {r['identity_ms_per_face']:.1f} ms per face on ")
        w(f"{r['identity_faces']} aligned faces, {r['identity_cost_over_align_mask']:.1f}x ")
        w("the cost of align + mask per image\n")
    if "pipeline_scaling_2_over_1" in r:
        w(f"  scaling 1 -> 2 cores: pipeline {r['pipeline_scaling_2_over_1']:.2f}x (pool), ")
        w(f"{r['pipeline_shards_scaling_2_over_1']:.2f}x (2 shard jobs), ")
        w(f"bare dlib {r['bare_dlib_scaling_2_over_1']:.2f}x\n")
    w(f"  masked {r['masked_fraction']:.2%} (bare dlib finds a face in ")
    w(f"{r['bare_dlib_found_fraction']:.2%}); geometry check passed by ")
    w(f"{r['geometry_pass_fraction'] or 0:.2%}\n")
    w(f"  routes {r['routes']}; rejects {r['rejects_by_reason']}\n")
    for det, d in r.get("by_detector", {}).items():
        w(f"  align.detector {det:12s} align + mask {d['img_s']:7.1f} img/s, ")
        w(f"{d['ratio_to_bare']:.2f} of bare dlib ({d['ratio_to_bare_cpu']:.2f} by CPU time; ")
        w(f"medians of the back-to-back pairs {d['ratio_paired_cpu']}), ")
        w(f"aligned {d['aligned_fraction']:.2%} ")
        w(f"(found by {d['found_by']})\n")
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
