"""The ``identity`` stage: dlib's descriptor of every aligned face of one shard, checkpointed as
it goes so a killed job resumes (:mod:`maskprivacy.faces.identity` does the work). The
``describe`` stage (:mod:`maskprivacy.stages.describe`) is the same job on a mask set's faces."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from maskprivacy.core.io import read_table, rejects_frame, write_table
from maskprivacy.datasets.worn import version_rows
from maskprivacy.faces import identity
from maskprivacy.stages.entry import Files, StageConfig


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    return describe_shard(config, inputs, outputs, "identity", log)


def describe_shard(
    config: StageConfig, inputs: Files, outputs: Files, stage: str, log: logging.Logger
) -> dict[str, Any]:
    """Describe one shard's faces (``inputs.images`` with ``inputs.landmarks``) under the
    ``identity:`` parameters; write the descriptors and the rejects (of ``stage``); an external
    set's job describes only its version's photos (``worn`` or not: ``inputs.manifest``). Warns when
    dlib has no BLAS (about 4.5 times slower), and says which it was in the report."""
    cfg = dict(config.params)
    table = read_table(inputs.landmarks)
    if inputs.get("manifest") and "version" in config.wildcards:  # an external set's version
        keep = version_rows(read_table(inputs.manifest), config.wildcards["version"])["file"]
        table = table[table["file"].isin(keep)].reset_index(drop=True)
    blas = identity.dlib_has_blas()
    if blas is False and len(table):
        log.warning("%s: %s", stage, identity.NO_BLAS)
    out = Path(outputs.descriptors)
    checkpoint = out.with_name(f".{out.name}.partial")
    descriptors, rejects, resumed = identity.describe_faces(
        cfg, inputs.images, table, checkpoint, stage=stage
    )
    identity.write_descriptors(out, descriptors)
    rej = rejects_frame(rejects)
    write_table(outputs.rejects, rej)
    checkpoint.unlink(missing_ok=True)
    return {
        "model": identity.model_path(cfg).name,
        "num_jitters": int(cfg.get("num_jitters", 0)),
        "dlib_blas": blas,
        "n_inputs": len(table),
        "n_described": len(descriptors),
        "n_resumed_from_checkpoint": resumed,
        "n_rejects": len(rej),
        "rejects_by_reason": rej["reason"].value_counts().to_dict(),
    }
