"""download: fetch (or generate, for the demo) the images, prove what they are, clean them.

Three sources, chosen by ``download.source`` in ``params.yaml``:

- ``demo``: UTKFace-named demo faces made offline by :mod:`maskprivacy.datasets.demo`;
- ``path``: UTKFace as the user has it: the aligned & cropped archive ``UTKFace.tar.gz``, a
  ``.zip`` of it (as Kaggle serves it), the extracted folder, or (``download.variant: wild``)
  the in-the-wild archives ``part1..3.tar.gz``; ``download.path`` is one path or a list, and
  archives at the top of a folder are opened too;
- ``url``: archives or single images fetched over HTTP(S) into ``download.cache_dir`` with
  resumable, retried, checksummed downloads (:mod:`maskprivacy.datasets.fetch`).

Archives are extracted safely (:mod:`maskprivacy.datasets.archives`). Then, whatever the
packaging:

1. every file is hashed (sha256) and, for the published aligned set, compared with the
   committed manifest (:mod:`maskprivacy.datasets.verify`, ``download.verify``): missing,
   altered and extra files are counted and, by default, stop the stage;
2. labels are parsed from the names (:mod:`maskprivacy.datasets.ingest`); the published label
   defects follow ``download.label_defects`` (:mod:`maskprivacy.datasets.defects`);
3. byte-identical and near-identical copies follow ``download.duplicates`` and
   ``download.near_duplicates`` (:mod:`maskprivacy.datasets.dedup`), and every file gets a
   duplicate group, which the split keeps on one side.

Every input file ends in exactly one of two tables: the manifest (labels, sha256) or the rejects
table (stage ``download``, with a reason). Decoding the images is left to the align stage (the
near-duplicate hash skips undecodable files). Nothing half-written ever sits under a final name:
downloads go to ``<dest>.part`` first, archives are extracted into a temporary folder, and the
image folder and tables are moved into place atomically.

Outputs: ``images`` (the flat image folder), ``manifest``, ``rejects``, and when the rule has
them ``groups`` (duplicate groups), ``pairs`` (near-duplicate pairs), ``verification`` and
``sheet`` (the contact sheet of near duplicates). Raises :class:`FileNotFoundError` for a
missing ``download.path``, :class:`~maskprivacy.datasets.fetch.DownloadError` for a failed
download, :class:`~maskprivacy.datasets.verify.VerificationError` when the files are not the
published ones and ``download.verify`` says so, and :class:`ValueError` when no input is a
usable image.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from maskprivacy.core.io import rejects_frame, write_table
from maskprivacy.core.plumbing import atomic_dir, explain_full_disk, remove_stale
from maskprivacy.datasets.archives import ArchiveLimits
from maskprivacy.datasets.dedup import DEFAULT_THRESHOLD, deduplicate
from maskprivacy.datasets.defects import DefectPolicy, defect_list
from maskprivacy.datasets.ingest import ingest, scan
from maskprivacy.datasets.sources import acquire
from maskprivacy.datasets.verify import (
    REFERENCES,
    VARIANTS,
    Verification,
    VerificationError,
    load_reference,
    other_variant_names,
    resolve_mode,
    verify,
)
from maskprivacy.report.data import near_duplicate_sheet
from maskprivacy.stages.entry import Files, StageConfig


def _off(value: Any) -> str:
    """A params value as a string; YAML reads a bare ``off`` as False."""
    return "off" if value is False else str(value)


@explain_full_disk("download")  # a full disk is reported as such
def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    """Run the download stage with the ``download`` section of params; return a summary."""
    cfg = dict(config.params)
    images_out = Path(outputs.images)
    kind = str(cfg.get("source", "demo"))
    variant = str(cfg.get("variant", "aligned"))
    policy = DefectPolicy.from_params(cfg)
    exact_policy = str(cfg.get("duplicates", "drop_conflicts"))
    near_policy = _off(cfg.get("near_duplicates", "drop_conflicts"))
    threshold = int(cfg.get("near_threshold", DEFAULT_THRESHOLD))
    verify_mode = _off(cfg.get("verify", "auto"))
    if variant not in VARIANTS:
        raise ValueError(f"download.variant must be one of {VARIANTS}, got {variant!r}")
    images_out.parent.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale(images_out, ".{name}.work.*"):
        log.info("removed %s, left by a download that was killed", stale)
    limits = ArchiveLimits.from_params(cfg)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(
        prefix=f".{images_out.name}.work.", dir=images_out.parent
    ) as w:
        got = acquire(cfg, Path(w), limits, progress=True)
        timings["acquire"] = time.perf_counter() - t0

        t = time.perf_counter()
        scanned = scan(got.files, got.shown, progress=True)
        reference = load_reference(variant=variant) if variant in REFERENCES else None
        mode, why = resolve_mode(verify_mode, kind, variant, scanned["file"], reference)
        check = verify(scanned, reference, mode, why) if reference is not None else None
        if check is None:
            check = Verification("off", why)
        if outputs.get("verification") is not None:
            write_table(outputs.verification, check.table)
        if mode != "off" and not check.ok:
            if mode == "error":
                raise VerificationError(check.message())
            log.warning("download.verify is warn, going on: %s", check.message())
        timings["hash_verify"] = time.perf_counter() - t

        t = time.perf_counter()
        with atomic_dir(images_out) as tmp:
            manifest, rejects = ingest(
                got.files, tmp, policy, got.sources, link=got.links, scanned=scanned
            )
            timings["ingest"] = time.perf_counter() - t
            t = time.perf_counter()
            dd = deduplicate(manifest, tmp, exact_policy, near_policy, threshold, True)
            timings["dedup"] = time.perf_counter() - t
            if outputs.get("sheet") is not None:
                t = time.perf_counter()
                near_duplicate_sheet(dd.pairs, tmp, threshold, outputs.sheet, demo=kind == "demo")
                timings["sheet"] = time.perf_counter() - t
            for row in dd.rejects:
                (tmp / row["file"]).unlink(missing_ok=True)
            manifest = dd.manifest
            if dd.rejects or got.rejects:
                rejects = rejects_frame(rejects.to_dict("records") + dd.rejects + got.rejects)
    write_table(outputs.manifest, manifest)
    write_table(outputs.rejects, rejects)
    if outputs.get("groups") is not None:
        write_table(outputs.groups, dd.groups)
    if outputs.get("pairs") is not None:
        write_table(outputs.pairs, dd.pairs)

    by_reason = dict(sorted(Counter(rejects["reason"]).items()))
    other_variant = other_variant_names(manifest, variant)
    if other_variant > len(manifest) / 2:
        log.warning(
            "%d of %d names look like the other variant than download.variant %r "
            "(aligned & cropped names end in .jpg.chip.jpg): check download.variant",
            other_variant,
            len(manifest),
            variant,
        )
    summary = {
        "source": kind,
        "variant": variant,
        "inputs": got.inputs,
        "n_inputs": got.n_entries,
        "n_images": len(manifest),
        "n_rejects": len(rejects),
        "rejects_by_reason": by_reason,
        "verification": check.summary(),
        "label_defects_policy": policy.mode,
        "label_fixes": policy.fixes_name,
        "label_defects": defect_list(manifest, rejects),
        "n_name_notes": int((manifest["name_note"].fillna("") != "").sum()),
        "duplicates": dd.summary,
        "n_names_of_other_variant": other_variant,
        "seconds_by_step": {k: round(v, 3) for k, v in timings.items()},
    }
    log.info(
        "%d inputs -> %d images, %d rejects %s",
        got.n_entries,
        len(manifest),
        len(rejects),
        by_reason,
    )
    if manifest.empty:
        raise ValueError(
            f"no usable image among the {got.n_entries} input entries of download.source "
            f"{kind!r} (rejects by reason: {by_reason or 'none'}; see {outputs.rejects})"
        )
    return summary
