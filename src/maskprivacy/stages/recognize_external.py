"""The ``recognize_external`` stage: the recognizer attacker on one external test set.

The heads ``recognize`` fitted on UTKFace (one per training set and seed, kept in
``results/recognize/heads/``: not refitted) read the descriptors of the set's unmasked and
masked faces (``describe_external``: ``data/external/<set>/describe/<version>/<shard>/``), on the
very faces the CNN's ``evaluate_external`` scores (those that passed align and every mask set).
Per version, training set and seed: predictions and metrics in ``evaluate_external``'s format
(``results/recognize_external/<set>/<version>/<training set>/seed<seed>/``), so ``compare``
gives both attackers the same statistics. A face without a descriptor (dlib refused it) is
predicted from the training prior, as in ``recognize``, and listed in ``rejects.csv``
(reason ``no_descriptor``). One job per set: applying fitted heads costs seconds.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from maskprivacy.analysis import recognizer
from maskprivacy.analysis.external import faces_of_versions, headline, write_scores
from maskprivacy.core.io import rejects_frame, write_table
from maskprivacy.stages.entry import Files, StageConfig
from maskprivacy.stages.recognize import heads_of


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    ext = config.wildcards["ext"]
    faces_of = faces_of_versions(
        inputs.manifest,
        inputs.landmarks,
        inputs.masks,
        ext,
        "recognize_external",
        {Path(p).parts[-4] for p in outputs.predictions},
    )
    tables: dict[str, list[str]] = defaultdict(list)
    # data/external/<set>/describe/<version>/<shard>/descriptors.csv, by version
    for path in inputs.descriptors:
        tables[Path(path).parts[-3]].append(path)
    versions = recognizer.load_versions(tables)
    heads = {heads_of(p): recognizer.load_heads(p) for p in inputs.heads}
    data_source = json.loads(Path(inputs.download_report).read_text())["source"]
    n_boot, boot_seed = int(config.params["bootstrap"]), int(config.params["seed"])
    rejects: dict[tuple[str, str], dict[str, str]] = {}
    results: dict[str, Any] = {}
    for pred_path, metrics_path in zip(outputs.predictions, outputs.metrics, strict=True):
        # results/recognize_external/<set>/<version>/<training set>/seed<seed>/predictions.csv
        version, train, seed_dir = Path(pred_path).parts[-4:-1]
        seed = int(seed_dir.removeprefix("seed"))
        name = f"{ext}: {version}, trained on {train}"
        faces = faces_of[version]
        files = faces["file"].tolist()
        if version not in versions or not files:  # a version this set lacks: no face
            preds, missing = None, []
        else:
            preds, missing = recognizer.predict(
                heads[(train, seed)], files, versions[version], name
            )
        for f in missing:
            rejects[(version, f)] = recognizer.no_descriptor(
                f, version, "external", stage="recognize_external"
            )
        job = {"set": ext, "version": version, "train": train, "seed": seed}
        metrics = write_scores(
            {"predictions": pred_path, "metrics": metrics_path},
            faces,
            preds,
            n_boot,
            boot_seed,
            {**job, "data_source": data_source},
        )
        results[f"{version} trained on {train} seed {seed}"] = headline(metrics)
        log.info(
            "%s, seed %s: %d faces, %d without a descriptor", name, seed, len(files), len(missing)
        )
    rej = rejects_frame(list(rejects.values()))
    write_table(outputs.rejects, rej)
    return {
        "set": ext,
        "n_faces": len(set().union(*(set(f["file"]) for f in faces_of.values()))),
        "n_faces_by_version": {v: int(len(f)) for v, f in sorted(faces_of.items())},
        "versions": {v: int(len(t)) for v, t in versions.items()},
        "n_no_descriptor": int(len(rej)),
        "results": results,
    }
