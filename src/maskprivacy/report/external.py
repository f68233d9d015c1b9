"""The report's section "External test sets": every trained model on each external set's
unmasked and masked faces, next to the same models on UTKFace's test set.

One row per (attacker, test set, version, training set), seed ensemble (the recognizer
attacker's rows after the CNN's when it scored the sets too), each number with its bootstrap 95%
interval; a set's columns are only those of the labels it gives (an age range is scored as a
group accuracy and as the error to the range, see :mod:`maskprivacy.analysis.external`). Then each
set's accounting: label rows and files in, images kept, rejects by stage and reason, faces scored.
"""

from __future__ import annotations

import html
from typing import Any

from maskprivacy.report.markup import ci, table

COLUMNS = (
    # (header, attribute, key, scale, digits)
    ("sex acc. %", "sex", "accuracy", 100, 1),
    ("sex bal. %", "sex", "balanced_accuracy", 100, 1),
    ("race acc. %", "race", "accuracy", 100, 1),
    ("race bal. %", "race", "balanced_accuracy", 100, 1),
    ("age MAE", "age", "mae", 1, 2),
    ("age range hit %", "age_range", "group_accuracy", 100, 1),
    ("error to range", "age_range", "range_error", 1, 2),
)
UTKFACE = "UTKFace test"
CNN = "CNN"
RECOGNIZER = "recognizer"


def _cell(m: dict[str, Any], attr: str, key: str, scale: float, digits: int) -> str:
    block = m.get(attr)
    if not block or block.get(key) is None:
        return "–"
    return ci(block[key], block.get(f"{key}_low"), block.get(f"{key}_high"), scale, digits)


def rows(
    external: dict[str, Any],
    conditions: list[dict[str, str]],
    utkface: dict[str, Any],
    attacker: str = CNN,
) -> list[dict[str, Any]]:
    """The section's rows of one attacker as dicts: attacker, test set, version, trained on, n,
    metrics (seed ensemble); UTKFace's test set first (its conditions' ensembles), then every
    external set."""
    out = []
    for cond in conditions:
        if cond["name"] in utkface:
            m = utkface[cond["name"]]["ensemble"]
            n = utkface[cond["name"]].get("n_test")
            out.append(
                {
                    "attacker": attacker,
                    "set": UTKFACE,
                    "version": cond["test"],
                    "train": cond["train"],
                    "n": n,
                    "m": m,
                }
            )
    for name, s in external.items():
        for r in s["results"]:
            m = r["ensemble"]
            out.append(
                {
                    "attacker": attacker,
                    "set": name,
                    "version": r["version"],
                    "train": r["train"],
                    "n": m["n_faces"],
                    "m": m,
                }
            )
    return out


def section(
    external: dict[str, Any] | None,
    conditions: list[dict[str, str]],
    utkface: dict[str, Any],
    recognizer: dict[str, Any] | None = None,
) -> str:
    """The HTML section ('' when no external set is configured). ``recognizer``: the recognizer
    attacker's statistics (``recognize.enabled``); its rows, when it scored the external sets,
    follow the CNN's."""
    if not external:
        return ""
    found = rows(external, conditions, utkface)
    rec_external = (recognizer or {}).get("external")
    if rec_external:
        found += rows(rec_external, conditions, recognizer["conditions"], RECOGNIZER)
    table_rows = [
        [
            r["attacker"],
            r["set"],
            r["version"],
            r["train"],
            r["n"],
            *(_cell(r["m"], *c[1:]) for c in COLUMNS),
        ]
        for r in found
    ]
    header = ["attacker", "test set", "faces", "model trained on", "n", *(c[0] for c in COLUMNS)]
    both = (
        " The recognizer attacker (dlib's descriptors read by the heads fitted on UTKFace's "
        "training part, per training set and seed, not refitted) is scored on the same faces: "
        "its rows follow the CNN's."
        if rec_external
        else ""
    )
    parts = [
        "<h2>External test sets</h2><p>Every trained model on each external set's faces, "
        "unmasked and masked (the same align and mask stages as UTKFace's), next to the same "
        "models on UTKFace's test set; seed ensemble, 95% bootstrap interval over faces. A set "
        "is scored only on the labels it gives: an age range (such as 20-29) as the share of "
        "faces whose predicted age, in whole years, falls in it, and as the error to the range "
        f"(0 inside, else the distance to the nearer bound). '–': the set does not give that "
        f"label.{both}</p>",
        table(table_rows, header),
    ]
    for name, s in external.items():
        acc = s["accounting"]
        acc_rows = [
            ["label rows", acc["label_rows"]],
            ["files", acc["files"]],
            ["images kept", acc["images"]],
            *([k, v] for k, v in acc["rejected_by_stage_and_reason"].items()),
            ["faces scored", acc["scored"]],
        ]
        if rec_external and name in rec_external:
            missing = rec_external[name].get("no_descriptor", {}).get("n", 0)
            acc_rows.append(
                ["of which without a recognizer descriptor (predicted from the prior)", missing]
            )
        labels = ", ".join(s["labels"]) or "none"
        parts.append(
            f"<h3>{html.escape(name)}</h3><p>Labels given: {html.escape(labels)}.</p>"
            + table(acc_rows, ["", "count"])
        )
    return "".join(parts)
