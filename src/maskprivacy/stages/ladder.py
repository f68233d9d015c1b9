"""ladder: the mask's cost for attackers of growing strength (:mod:`maskprivacy.analysis.ladder`).

Reads each rung's predictions on the split's test faces, for compare.baseline and
ladder.condition (rung-major, baseline first, as the rule lists them: the CNN rungs' from
``evaluate_ladder``, or the study's own ``evaluate`` for a reused rung; the recognizer's from
``recognize``), and each rung's train reports (for its training time). Writes the statistics
(``ladder.json``), the DVC metrics (``metrics.json``: the rungs side by side), the table
(``ladder.csv``) and the figure (``plots/ladder.png``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.analysis import ladder as analysis
from maskprivacy.analysis.conditions import test_part
from maskprivacy.core.io import read_table, save_figure, write_json, write_table
from maskprivacy.report import ladder as report
from maskprivacy.stages.entry import Files, StageConfig


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    cfg, extra = config.params, config.extra
    rungs: dict[str, Any] = {name: dict(r) for name, r in extra["rungs"].items()}
    baseline, condition = extra["baseline"], extra["condition"]
    test = test_part(inputs.split)
    preds = list(inputs.predictions)
    if len(preds) != 2 * len(rungs):
        raise ValueError(
            f"ladder: {len(preds)} prediction files for {len(rungs)} rungs x 2 conditions"
        )
    reports = list(inputs.train_reports)
    per_rung = len(reports) // max(1, len(rungs))
    base_epochs = min((r["epochs"] for r in rungs.values() if r["reused"]), default=None)
    for i, (name, r) in enumerate(rungs.items()):
        r["attacker"] = "CNN"
        r["longer"] = base_epochs is not None and r["epochs"] > base_epochs
        mine = reports[i * per_rung : (i + 1) * per_rung]
        train = [json.loads(Path(f).read_text()) for f in mine]
        r["train_seconds"] = sum(t.get("fit_seconds") or 0 for t in train) or None
        # the pace of each model's last epoch: what a rung costs on this machine when a slower
        # epoch (shared cores, a resumed run) weighs on its total
        last = [t["last_epoch_seconds"] for t in train if t.get("last_epoch_seconds")]
        r["epoch_seconds"] = sum(last) / len(last) if last else None
        r["stats"] = analysis.rung_statistics(
            test,
            read_table(preds[2 * i]),
            read_table(preds[2 * i + 1]),
            int(cfg["bootstrap"]),
            int(cfg["seed"]),
            int(cfg["permutations"]),
        )
        log.info("ladder: rung %s scored on %d test faces", name, len(test))
    if "recognizer_predictions" in inputs:
        a, b = inputs.recognizer_predictions
        rungs[analysis.RECOGNIZER] = {
            "attacker": "recognizer",
            "reused": True,
            "stats": analysis.rung_statistics(
                test,
                read_table(a),
                read_table(b),
                int(cfg["bootstrap"]),
                int(cfg["seed"]),
                int(cfg["permutations"]),
            ),
        }
    ladder = {
        "baseline": baseline,
        "condition": condition,
        "seed": extra["seed"],
        "n_test": int(len(test)),
        "rungs": rungs,
        "references": analysis.REFERENCES,
    }
    ladder["trends"] = analysis.summarize(rungs)
    ladder["sentence"] = analysis.sentence(ladder)
    write_json(outputs.statistics, ladder)
    write_json(outputs.metrics, analysis.metrics(ladder))
    write_table(
        outputs.table,
        pd.DataFrame(report.table_rows(ladder), columns=report.HEADER),
    )
    title = (
        f"The mask's cost by attacker: {len(test):,} test faces, one seed ({condition} "
        f"\u2212 {baseline}), 95% intervals"
    )
    Path(outputs.figure).parent.mkdir(parents=True, exist_ok=True)
    save_figure(report.ladder_figure(ladder, title), outputs.figure)
    log.info("%s", ladder["sentence"])
    return {"rungs": list(rungs), "sentence": ladder["sentence"]}
