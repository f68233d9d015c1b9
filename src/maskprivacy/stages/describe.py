"""The ``describe`` stage: dlib's descriptor of every masked face of one mask set and shard, as
the recognizer attacker sees it (:mod:`maskprivacy.analysis.recognizer`).

The same job as ``identity`` (:func:`maskprivacy.stages.identity.describe_shard`: the same
network and parameters, ``identity:`` in params.yaml, checkpointed and resumable), run on
``data/mask/{maskset}/{shard}/images`` with the aligned faces' landmarks (a mask is painted on
the aligned face, so the landmarks are the same). The unmasked faces' descriptors are the
``identity`` stage's: each version of a face is described once.
"""

from __future__ import annotations

import logging
from typing import Any

from maskprivacy.stages.entry import Files, StageConfig
from maskprivacy.stages.identity import describe_shard


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    return describe_shard(config, inputs, outputs, "describe", log)
