"""Metrics of a model on an external test set: only for the labels the set gives.

The labels come from :mod:`maskprivacy.datasets.external` (``sex``, ``race``, ``age``,
``age_low``/``age_high``; empty where the set does not say), the predictions from the model
(``sex_pred``, ``race_pred``, ``age_pred``). Each attribute is scored on the faces that have its
label, each metric with a seeded percentile bootstrap 95% interval over those faces
(:func:`maskprivacy.analysis.stats.bootstrap_ci`):

- ``sex``, ``race``: accuracy and balanced accuracy (mean recall over the classes present),
  per-class recall and the confusion matrix;
- ``age`` (exact ages): MAE, RMSE and the mean signed error (predicted - true);
- ``age_range`` (a range such as ``20-29``): the group accuracy, the share of faces whose
  predicted age, rounded to whole years as ages are labelled, falls in the range; and the error to
  the range, 0 inside it, else the distance from the predicted age to the nearer bound (for a
  range of one year it is that face's absolute error, so it reads as an MAE).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from maskprivacy.analysis import real_masks, stats
from maskprivacy.analysis.conditions import classification_with_intervals, ensemble_predictions
from maskprivacy.analysis.metrics import mae, rmse
from maskprivacy.core.io import read_table, write_json, write_table
from maskprivacy.core.labels import RACES, SEXES
from maskprivacy.datasets.worn import WORN, has_worn, version_rows

ATTRIBUTES = ("sex", "race", "age", "age_range")


def range_error(pred: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per face: 0 when the predicted age lies in [low, high], else the distance to it."""
    return np.maximum(np.maximum(low - pred, pred - high), 0.0)


def in_range(pred: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Per face: does the predicted age, rounded to whole years (half up), fall in the range?"""
    years = np.floor(pred + 0.5)
    return (years >= low) & (years <= high)


def _mean_of(per_face: Callable[..., np.ndarray], *arrays: np.ndarray) -> float:
    return float(np.mean(per_face(*arrays)))


def _classification(
    t: np.ndarray, p: np.ndarray, names: tuple[str, ...], n_boot: int, seed: int
) -> dict[str, Any]:
    out = {"n": int(len(t)), **classification_with_intervals(t, p, len(names), n_boot, seed)}
    out["per_class_recall"] = dict(zip(names, out["per_class_recall"], strict=True))
    return out


def external_metrics(
    labels: pd.DataFrame, preds: pd.DataFrame, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Metrics of ``preds`` on the faces of ``labels`` it covers (joined on ``file``), for each
    label the set gives (see the module docstring). ``n_faces``: the faces joined."""
    cols = ["file", "sex", "race", "age", "age_low", "age_high"]
    df = labels[cols].merge(preds[["file", "sex_pred", "race_pred", "age_pred"]], on="file")
    out: dict[str, Any] = {"n_faces": int(len(df))}
    for attr, names in (("sex", SEXES), ("race", RACES)):
        have = df[df[attr].notna()]
        if len(have):
            t = have[attr].to_numpy(np.int64)
            p = have[f"{attr}_pred"].to_numpy(np.int64)
            out[attr] = _classification(t, p, names, n_boot, seed)
    have = df[df["age"].notna()]
    if len(have):
        t, p = have["age"].to_numpy(float), have["age_pred"].to_numpy(float)
        out["age"] = {
            "n": int(len(have)),
            **stats.with_interval("mae", mae, (t, p), n_boot, seed),
            **stats.with_interval("rmse", rmse, (t, p), n_boot, seed),
            "mean_error": float((p - t).mean()),
        }
    have = df[df["age_low"].notna()]
    if len(have):
        p = have["age_pred"].to_numpy(float)
        lo, hi = have["age_low"].to_numpy(float), have["age_high"].to_numpy(float)
        hit = partial(_mean_of, in_range)
        err = partial(_mean_of, range_error)
        out["age_range"] = {
            "n": int(len(have)),
            **stats.with_interval("group_accuracy", hit, (p, lo, hi), n_boot, seed),
            **stats.with_interval("range_error", err, (p, lo, hi), n_boot, seed),
        }
    return out


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The one number per label the set gives: sex and race accuracy, age MAE, age-range group
    accuracy and error to the range."""
    keys = {
        "sex": ("accuracy",),
        "race": ("accuracy",),
        "age": ("mae",),
        "age_range": ("group_accuracy", "range_error"),
    }
    return {
        f"{attr}_{k}": metrics[attr][k] for attr, ks in keys.items() if attr in metrics for k in ks
    }


def labels_present(manifest: pd.DataFrame) -> list[str]:
    """The labels a set gives for at least one face: of sex, race, age, age_range."""
    have = {
        "sex": manifest["sex"].notna().any(),
        "race": manifest["race"].notna().any(),
        "age": manifest["age"].notna().any(),
        "age_range": manifest["age_low"].notna().any(),
    }
    return [k for k, v in have.items() if v]


def faces_in_every_version(
    manifest: pd.DataFrame, version_tables: dict[str, list[pd.DataFrame]]
) -> pd.DataFrame:
    """The manifest's faces that every version has (each version: its per-shard tables with a
    ``file`` column, e.g. align's landmarks and mask's masks), so every model and version is
    scored on the same faces; in the manifest's order."""
    keep = pd.Series(True, index=manifest.index)
    for tables in version_tables.values():
        files = set().union(*(set(t["file"]) for t in tables)) if tables else set()
        keep &= manifest["file"].isin(files)
    return manifest[keep].reset_index(drop=True)


def faces_of_versions(
    manifest: str | os.PathLike,
    landmarks: Sequence[str | os.PathLike],
    masks: Sequence[str | os.PathLike],
    name: str,
    stage: str,
    versions: Iterable[str | None],
) -> dict[str | None, pd.DataFrame]:
    """The faces of external set ``name`` every model and attacker is scored on, per version of
    ``versions``: those of its ``manifest`` that passed align (``landmarks``: one table per
    shard) and every mask set (``masks``: ``data/external/<set>/mask/<mask set>/<shard>/
    masks.csv``), the tables read once for all versions. A set with real masks
    (:mod:`maskprivacy.datasets.worn`) splits them: its ``worn`` version is the photos that wear
    one and passed align (they are never painted), every other version the photos without one
    that passed align and every mask set; either may be empty there. Version ``None``: a set
    without real masks' faces (every version has the same)."""
    table = read_table(manifest)
    worn = has_worn(table)
    aligned = [read_table(t) for t in landmarks]
    every: dict[str, list[pd.DataFrame]] = {"unmasked": aligned}
    for t in masks:
        every.setdefault(Path(t).parts[-3], []).append(read_table(t))
    out: dict[str | None, pd.DataFrame] = {}
    for version in versions:
        rows = table if version is None else version_rows(table, version)
        faces = faces_in_every_version(rows, {"unmasked": aligned} if version == WORN else every)
        if faces.empty and not worn:
            raise ValueError(
                f"{stage}: no face of external set {name!r} passed align and every mask set"
            )
        out[version] = faces
    return out


def scored_faces(
    manifest: str | os.PathLike,
    landmarks: Sequence[str | os.PathLike],
    masks: Sequence[str | os.PathLike],
    name: str,
    stage: str,
    version: str | None = None,
) -> pd.DataFrame:
    """The faces :func:`faces_of_versions` gives for one ``version``."""
    return faces_of_versions(manifest, landmarks, masks, name, stage, [version])[version]


PREDICTION_COLUMNS = ["file", "sex_pred", "race_pred", "age_pred"]


def write_scores(
    outputs: Mapping[str, Any],
    faces: pd.DataFrame,
    preds: pd.DataFrame,
    n_boot: int,
    seed: int,
    job: dict[str, Any],
) -> dict[str, Any]:
    """Write one model's ``preds`` on an external set's ``faces`` (``outputs["predictions"]``)
    and their :func:`external_metrics` after ``job`` (set, version, train, seed, data_source:
    ``outputs["metrics"]``); return the metrics."""
    if faces.empty:  # a version a set with real masks lacks (no worn photo, or none without)
        preds = pd.DataFrame(columns=PREDICTION_COLUMNS)
    metrics = external_metrics(faces, preds, n_boot, seed)
    write_table(outputs["predictions"], preds)
    write_json(outputs["metrics"], {**job, **metrics})
    return metrics


def summarise(
    manifest: pd.DataFrame,
    predictions: dict[tuple[str, str], dict[int, pd.DataFrame]],
    rejects: pd.DataFrame,
    ingest_report: dict[str, Any],
    n_boot: int,
    seed: int,
    tests: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One external set: for each (version, training set) the seed ensemble's metrics (the mean
    of the seeds' outputs) with intervals, and the seeds' headline numbers with their mean and
    SD; the labels the set gives; and the accounting of its label rows and files (``manifest``:
    every image the ingest kept, of which the predictions cover those scored; ``rejects``: every
    stage's of this set). A set with real masks also gets ``real_masks``, the comparison of real,
    painted and no masks (:mod:`maskprivacy.analysis.real_masks`, its tests as ``tests`` says:
    ``compare``'s alpha and permutations)."""
    results = []
    scored: set[str] = set()
    for (version, train), by_seed in predictions.items():
        seeds = sorted(by_seed)
        ens = ensemble_predictions([by_seed[s] for s in seeds])
        per_seed = {
            str(s): headline(external_metrics(manifest, by_seed[s], n_boot, seed)) for s in seeds
        }
        table = pd.DataFrame(per_seed.values())
        metrics = external_metrics(manifest, ens, n_boot, seed)
        scored.update(ens["file"])
        results.append(
            {
                "version": version,
                "train": train,
                "seeds": seeds,
                "ensemble": metrics,
                "per_seed": per_seed,
                "mean": {k: float(v) for k, v in table.mean().items()},
                "sd": {k: float(v) for k, v in table.std(ddof=1).items()} if len(seeds) > 1 else {},
            }
        )
    by = rejects.groupby(["stage", "reason"]).size()
    out = {
        "labels": labels_present(manifest),
        "accounting": {
            "label_rows": ingest_report["n_rows"],
            "files": ingest_report["n_entries"],
            "images": int(len(manifest)),
            "scored": len(scored),
            "rejected_by_stage_and_reason": {f"{s}: {r}": int(n) for (s, r), n in by.items()},
        },
        "results": results,
    }
    painted = sorted({v for v, _ in predictions} - {"unmasked", WORN})
    real = real_masks.analyse(
        manifest, predictions, painted, {"bootstrap": n_boot, "seed": seed, **(tests or {})}
    )
    if real is not None:
        out["real_masks"] = real
    return out


def set_rejects(paths: Sequence[str | os.PathLike], name: str) -> pd.DataFrame:
    """Every rejects table of external set ``name`` among ``paths``
    (``data/external/<set>/.../rejects.csv``: the ingest's, align's and mask's), as one."""
    return pd.concat([read_table(f) for f in paths if Path(f).parts[2] == name], ignore_index=True)


def from_inputs(
    inputs: Mapping[str, Any],
    n_boot: int,
    seed: int,
    attacker: str = "external_predictions",
    tests: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every external set's :func:`summarise`, by name, from compare's inputs: each set's
    ``external_reports`` and ``external_manifests`` (``data/external/<set>/{report.json,
    manifest.csv}``), ``external_rejects`` (``data/external/<set>/.../rejects.csv``: the
    ingest's, align's and mask's) and the ``attacker``'s predictions: the CNN's
    ``external_predictions``
    (``results/external/<set>/<version>/<training set>/seed<seed>/predictions.csv``), or the
    recognizer's ``recognizer_external_predictions`` (``results/recognize_external/...``, the
    same layout)."""
    reports, manifests = inputs["external_reports"], inputs["external_manifests"]
    rejects, predictions = inputs["external_rejects"], inputs[attacker]

    def set_of(path: str) -> str:
        return Path(path).parts[2]

    preds: dict[str, dict[tuple[str, str], dict[int, pd.DataFrame]]] = {}
    for f in predictions:
        name, version, train, seed_dir = Path(f).parts[2:6]
        by_seed = preds.setdefault(name, {}).setdefault((version, train), {})
        by_seed[int(seed_dir.removeprefix("seed"))] = read_table(f)
    out = {}
    for report, manifest in zip(reports, manifests, strict=True):
        name = set_of(manifest)
        table = set_rejects(rejects, name)
        out[name] = summarise(
            read_table(manifest),
            preds[name],
            table,
            json.loads(Path(report).read_text()),
            n_boot,
            seed,
            tests,
        )
    return out


def metrics_summary(external: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of each set's seed ensembles, for ``results/metrics.json``:
    ``{set: {"<version>_trained_on_<training set>": {"sex_accuracy": ..., ...}}}``."""
    return {
        name: {
            f"{r['version']}_trained_on_{r['train']}": headline(r["ensemble"]) for r in s["results"]
        }
        for name, s in external.items()
    }
