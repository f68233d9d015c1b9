"""Exact duplicates: byte-identical files under different names (UTKFace has 390 of them).

A duplicate group is every file with the same sha256. Policies (``download.duplicates``):

- ``keep_all``: keep every copy (the published set as it is; leaks across the split);
- ``keep_one``: keep the first copy by file name, reject the others (``duplicate_bytes``);
- ``drop_conflicts`` (default): as ``keep_one``, but a group whose copies carry different
  labels (age, sex or race) is dropped whole (``duplicate_label_conflict``): no one knows
  which label is right.
"""

from __future__ import annotations

import pandas as pd

POLICIES = ("keep_all", "keep_one", "drop_conflicts")
LABELS = ["age", "sex", "race"]


def exact_duplicates(
    manifest: pd.DataFrame, policy: str = "drop_conflicts"
) -> tuple[pd.DataFrame, list[dict]]:
    """Apply ``policy``; return the kept manifest and reject rows (stage ``download``)."""
    if policy not in POLICIES:
        raise ValueError(f"download.duplicates must be one of {POLICIES}, got {policy!r}")
    if policy == "keep_all" or manifest.empty:
        return manifest, []
    m = manifest.sort_values("file", kind="stable")
    rejects: list[dict] = []
    drop: set[str] = set()
    for _, group in m[m["sha256"].duplicated(keep=False)].groupby("sha256", sort=True):
        files = group["file"].tolist()
        conflict = len(group[LABELS].drop_duplicates()) > 1
        if conflict and policy == "drop_conflicts":
            for f in files:
                others = ", ".join(o for o in files if o != f)
                rejects.append(
                    {
                        "file": f,
                        "stage": "download",
                        "reason": "duplicate_label_conflict",
                        "detail": f"same bytes, other labels: {others}",
                    }
                )
                drop.add(f)
        else:
            for f in files[1:]:
                rejects.append(
                    {
                        "file": f,
                        "stage": "download",
                        "reason": "duplicate_bytes",
                        "detail": f"same bytes as {files[0]} (kept)",
                    }
                )
                drop.add(f)
    kept = manifest[~manifest["file"].isin(drop)].reset_index(drop=True)
    return kept, rejects
