"""recognize: the recognizer attacker's heads on face descriptors, for every condition and seed.

Reads the descriptors of every face version a condition trains or tests on (the ``identity``
stage's tables for ``unmasked``, the ``describe`` stage's for each mask set) and the split;
fits the heads of :mod:`maskprivacy.analysis.recognizer` once per training set and seed and
writes, per condition and seed, the predictions and metrics in the format of the CNN's
``evaluate`` (``results/recognize/{condition}/seed{seed}/``), so that ``compare`` reports both
attackers with the same statistics. One job: the heads cost seconds once the descriptors exist.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from maskprivacy.analysis import recognizer
from maskprivacy.analysis.conditions import condition_metrics, headline, test_part
from maskprivacy.core.io import read_table, rejects_frame, write_json, write_table
from maskprivacy.stages.entry import Files, StageConfig


def version_of(path: str) -> str:
    """The face version a descriptor table holds, from its path: ``unmasked`` for
    ``data/identity/<shard>/descriptors.csv``, the mask set for
    ``data/describe/<set>/<shard>/descriptors.csv``."""
    parts = Path(path).parts
    if len(parts) >= 3 and parts[-3] == "identity":
        return "unmasked"
    if len(parts) >= 4 and parts[-4] == "describe":
        return parts[-3]
    raise ValueError(f"recognize: {path} is neither an identity nor a describe table")


def heads_of(path: str | Path) -> tuple[str, int]:
    """(training set, seed) of a heads file ``recognize`` keeps for the external test sets:
    ``results/recognize/heads/<training set>/seed<seed>.joblib``."""
    p = Path(path)
    return p.parent.name, int(p.stem.removeprefix("seed"))


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    cfg = dict(config.params)
    ev = config.extra["evaluate"]
    conditions = list(ev["conditions"])
    seeds = [int(s) for s in config.extra["seeds"]]
    tables: dict[str, list[str]] = defaultdict(list)
    for path in inputs.descriptors:
        tables[version_of(path)].append(path)
    needed = {c[k] for c in conditions for k in ("train", "test")}
    if needed - set(tables):
        raise ValueError(f"recognize: no descriptors of {sorted(needed - set(tables))}")
    versions = recognizer.load_versions(tables)
    split = read_table(inputs.split)
    test = test_part(inputs.split)
    data_source = json.loads(Path(inputs.download_report).read_text())["source"]
    fitted: dict[tuple[str, int], recognizer.Heads] = {}
    preds, rejects, summary = recognizer.recognize(
        split, versions, conditions, seeds, cfg, config.compute.threads, log, fitted
    )
    for path in outputs.get("heads", []):  # evaluate.external: kept for recognize_external
        recognizer.save_heads(path, fitted[heads_of(path)])
    files = iter(zip(outputs.predictions, outputs.metrics, strict=True))
    headlines: dict[str, Any] = {}
    for cond in conditions:  # condition-major, seed-minor: the rule's expand() order
        for seed in seeds:
            pred_path, metrics_path = next(files)
            df = preds[(cond["name"], seed)]
            full = condition_metrics(test, df, int(ev["bootstrap"]), int(ev["seed"]))
            write_table(pred_path, df)
            write_json(
                metrics_path,
                {"condition": cond, "seed": seed, "data_source": data_source, **full},
            )
            headlines[f"{cond['name']} seed {seed}"] = headline(full)
    rej = rejects_frame(rejects)
    write_table(outputs.rejects, rej)
    return {
        **summary,
        "versions": {v: int(len(t)) for v, t in versions.items()},
        "n_rejects": int(len(rej)),
        "conditions": headlines,
    }
