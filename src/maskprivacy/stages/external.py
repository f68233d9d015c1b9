"""The ``external`` stage: one external test set (``evaluate.external.<name>``) read into a flat
image folder and a manifest of UTKFace-coded labels, every label row and file accounted for
(:mod:`maskprivacy.datasets.external`); ``align`` and ``mask`` then take it as they take UTKFace."""

from __future__ import annotations

import logging
from typing import Any

from maskprivacy.datasets import external
from maskprivacy.stages.entry import Files, StageConfig


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    name = config.wildcards["ext"]
    summary = external.run(config.params[name], outputs.images, outputs.manifest, outputs.rejects)
    log.info(
        "%s: %d label rows, %d files -> %d images, rejects %s",
        name,
        summary["n_rows"],
        summary["n_entries"],
        summary["n_images"],
        summary["rejects_by_reason"],
    )
    return {"set": name, **summary}
