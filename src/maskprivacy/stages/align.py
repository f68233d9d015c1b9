"""The ``align`` stage: each input of this shard ends aligned in the landmarks table, or in
rejects with a reason (:mod:`maskprivacy.faces.align` does the work). The report counts the
faces each step of the detection cascade found (``routes``, and ``found_by``: cascade, prior box
or CNN) and the photos where the detector found several faces (``several_faces``; one is kept,
:func:`maskprivacy.faces.detect.choose_face`).

``align.prealigned`` (the prior box: where UTKFace's aligned crops hold the face) does not apply
to an external test set's jobs (``align_external``, wildcard ``ext``): their faces are detected,
and the CNN fallback runs at the default levels (:data:`~maskprivacy.faces.detect.CNN_UPSAMPLE`,
upsampled for small faces), not at the pre-aligned crops' ``align.cnn_upsample``.

An external set's photos labelled as wearing a real mask (the manifest's ``worn``,
:mod:`maskprivacy.datasets.external`) are found and aligned like the others, on their eyes, and
their landmarks are checked on the upper face only (the mouth and jaw points are guesses under
the mask). Without ``align.prealigned`` (every external set), each detector that finds nothing
runs again on a padded copy (``align.pad``: faces that fill the frame), and the detectors run on
a copy reduced to ``align.detect_side`` (the predictor on the full-size photo), so a photo of any
size costs about the same.

With ``align.landmarks`` (the rule's ``landmarks`` input), each input's face is looked up by the
sha256 of its bytes in that table (:mod:`maskprivacy.faces.landmarks`) instead of detected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.core.io import read_table, rejects_frame, write_table
from maskprivacy.core.plumbing import atomic_dir, explain_full_disk
from maskprivacy.core.shards import select
from maskprivacy.datasets.worn import worn_files
from maskprivacy.faces import align
from maskprivacy.faces import detect as faces
from maskprivacy.faces import landmarks as lm
from maskprivacy.stages.entry import Files, StageConfig


def known_faces(table: str, paths: list[Path]) -> dict[str, lm.Face]:
    """Each of ``paths``' face (by file name) from the landmarks table ``table``; an input the
    table lacks is an error naming it."""
    faces = lm.read_table(table)
    known, missing = {}, []
    for p in paths:
        face = faces.get(lm.file_sha256(p))
        if face is None:
            missing.append(p.name)
        else:
            known[p.name] = face
    if missing:
        raise ValueError(
            f"align.landmarks: {table} lacks {len(missing)} of the {len(paths)} inputs (by "
            f"sha256), e.g. {', '.join(missing[:3])}: it was made from other files; make it "
            "from these with `python -m maskprivacy.faces.find_landmarks`"
        )
    return known


def found_by(routes: pd.Series) -> dict[str, int]:
    """Faces by the step that found them: ``cascade`` (HOG), ``prior_box``, ``cnn``, and,
    where they found any, ``worn`` (HOG at a lowered threshold, photos that wear a real mask)
    and ``frame_box`` (faces that fill the frame no detector found)."""

    def step_of(route: str) -> str:
        if route.startswith(("cnn", "worn")):
            return route.split("_", 1)[0]
        return route if route in ("prior_box", faces.FRAME) else "cascade"

    step = routes.map(step_of)
    out = {k: int((step == k).sum()) for k in ("cascade", "prior_box", "cnn")}
    extra = {k: int((step == k).sum()) for k in ("worn", faces.FRAME) if (step == k).any()}
    return {**out, **extra}


def external_params(cfg: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The ``align`` params an external test set's jobs run with, and a note of what changed.

    An external set is not UTKFace's crops: the prior box of ``align.prealigned`` (where those
    crops hold the face) would put landmarks, and a mask, where no face is, and the CNN levels
    of pre-aligned crops (``align.cnn_upsample``, no upsampling: their face fills the crop)
    would lose its small faces. With ``align.prealigned`` both go; ``cfg`` is left alone."""
    if not cfg.get("prealigned"):
        return cfg, ""
    out = {**cfg, "prealigned": False, "cnn_upsample": list(faces.CNN_UPSAMPLE)}
    return out, (
        f"no prior box and CNN levels {out['cnn_upsample']} (align.prealigned and "
        "align.cnn_upsample are for UTKFace's crops)"
    )


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    cfg = dict(config.params)
    shard, shards = int(config.wildcards.get("shard", 0)), int(cfg.get("shards", 1))
    manifest = read_table(inputs.manifest)
    files = select(manifest["file"].tolist(), shard, shards)
    paths = [Path(inputs.images) / f for f in files]
    align.check_prior_box(cfg)
    if config.wildcards.get("ext"):
        cfg, note = external_params(cfg)
        if note:
            log.info("align: external set %s: %s", config.wildcards["ext"], note)
    faces.check_detector(cfg.get("detector", faces.DEFAULT_DETECTOR))
    table = inputs.get("landmarks") or None
    known = known_faces(table, paths) if table else None
    if known is not None:
        log.info("align: faces from %s, no detection", table)
    worn = worn_files(manifest)
    if worn:
        log.info("align: %d photos wear a real mask (upper-face landmark checks)", len(worn))
    with explain_full_disk("align"), atomic_dir(outputs.images) as tmp:
        rows = align.align_files(paths, tmp, cfg, known, config.compute.threads, worn=worn)
    ok = [r for r in rows if r["ok"]]
    aligned = pd.DataFrame(
        [[r["file"], r["route"], r["faces"], *r["landmarks"]] for r in ok],
        columns=["file", "route", "faces", *lm.LANDMARK_COLUMNS],
    ).sort_values("file", kind="stable")
    rejects = rejects_frame(
        [
            {"file": r["file"], "stage": "align", "reason": r["reason"], "detail": r["detail"]}
            for r in rows
            if not r["ok"]
        ]
    )
    with explain_full_disk("align"):
        write_table(outputs.landmarks, aligned)
        write_table(outputs.rejects, rejects)
    return {
        "shard": f"{shard} of {shards}",
        "n_inputs": len(files),
        "n_aligned": len(ok),
        "n_rejects": len(rejects),
        "aligned_fraction": round(len(ok) / len(files), 6) if files else None,
        "detector": cfg.get("detector", faces.DEFAULT_DETECTOR),
        "routes": dict(sorted(aligned["route"].value_counts().to_dict().items())),
        "found_by": found_by(aligned["route"]),
        "several_faces": int((aligned["faces"] > 1).sum()),
        "rejects_by_reason": rejects["reason"].value_counts().to_dict(),
        "prealigned": bool(cfg.get("prealigned", False)),
        **({"worn_aligned": int(aligned["file"].isin(worn).sum())} if worn else {}),
        **({"landmarks_table": str(table)} if table else {}),
    }
