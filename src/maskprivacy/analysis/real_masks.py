"""Real masks against painted ones: what a mask worn in a photo costs an attacker, and whether a
mask painted on a photo costs it the same.

An external set with real masks (:mod:`maskprivacy.datasets.worn`) has, per attacker and model
(training set; the seed ensemble), three kinds of version of its photos:

- **no mask** (``unmasked``): its photos without a mask, as aligned;
- **real mask** (``worn``): its photos that wear one, as they are;
- **painted mask** (each mask set of ``mask.sets``): the mask set painted on the no-mask photos.

Per attribute the set gives (sex, race, age), three comparisons: real - none, painted - none (for
each mask set), and real - painted. The unit of a test is the **person** where the set names
persons (each person's mean score over their photos of a version; only persons with photos of
both versions): a percentile bootstrap interval of the mean difference over persons and a
sign-flip permutation test over persons, so that one person's many photos count once. Without
persons, painted - none pairs each photo with itself (the same photos), and real - none and real -
painted, on different photos, are unpaired: a two-sample bootstrap and a permutation test of the
labels over photos. Holm-Bonferroni over all comparisons of one attacker and set (its own family).

The score of a face is 1 or 0 (right or wrong) for sex and race, so the mean is the accuracy; the
absolute error in years for age. Beside accuracy, each version's balanced accuracy and each
class's recall (:mod:`maskprivacy.analysis.external`): with classes as unbalanced as halfFace's
(151 men, 15 women), a mask can push a model towards the majority answer while its accuracy barely
moves. Chance is the set's own: the share of its majority class (its mean age's error for age).

A difference is called only where the data can carry it: ``lower`` / ``higher`` where Holm's p is
under alpha, else ``no difference shown``, with the interval saying how large a difference the
data still allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from maskprivacy.analysis import stats
from maskprivacy.analysis.conditions import ensemble_predictions
from maskprivacy.core.labels import RACES, SEXES
from maskprivacy.datasets.worn import MASK_TYPE, PERSON, WORN, worn_flags

NONE = "unmasked"
ATTRS = (("sex", SEXES), ("race", RACES))
LOWER_IS_BETTER = {"age": True, "sex": False, "race": False}


def face_scores(labels: pd.DataFrame, preds: pd.DataFrame, attr: str) -> pd.DataFrame:
    """Per face of ``preds`` with an ``attr`` label: ``file``, ``person`` (or the file where the
    set names none) and ``score`` (1/0 right for sex and race, absolute error for age)."""
    df = labels.merge(preds[["file", f"{attr}_pred"]], on="file")
    df = df[df[attr].notna()]
    truth = df[attr].to_numpy(float)
    pred = df[f"{attr}_pred"].to_numpy(float)
    score = np.abs(pred - truth) if attr == "age" else (pred == truth).astype(float)
    person = df[PERSON].astype(str) if PERSON in df and df[PERSON].notna().all() else df["file"]
    return pd.DataFrame(
        {"file": df["file"].to_numpy(), "person": person.to_numpy(), "score": score}
    )


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x))


def difference(
    a: pd.DataFrame,
    b: pd.DataFrame,
    by_person: bool,
    same_photos: bool,
    n_boot: int,
    seed: int,
    n_perm: int,
) -> dict[str, Any]:
    """Mean score of ``a`` minus that of ``b`` (:func:`face_scores` frames) with a 95% interval
    and a two-sided permutation p-value: over persons (each person's mean, persons in both),
    over the same photos paired, or unpaired over photos."""
    if by_person:
        ma = a.groupby("person")["score"].mean()
        mb = b.groupby("person")["score"].mean()
        both = ma.index.intersection(mb.index)
        d = (ma[both] - mb[both]).to_numpy(float)
        unit = "persons"
    elif same_photos:
        m = a.merge(b, on="file", suffixes=("_a", "_b"))
        d = (m["score_a"] - m["score_b"]).to_numpy(float)
        unit = "photos (paired)"
    else:
        return _unpaired(
            a["score"].to_numpy(float), b["score"].to_numpy(float), n_boot, seed, n_perm
        )
    if d.size == 0:
        return {"n": 0, "unit": unit, "difference": None, "low": None, "high": None, "p": None}
    ci = stats.bootstrap_ci(_mean, (d,), n_boot, seed)
    test = stats.sign_flip_test(d, n_perm, seed)
    return {
        "n": int(d.size),
        "unit": unit,
        "difference": float(d.mean()),
        "low": ci["low"],
        "high": ci["high"],
        "p": test["p_value"],
    }


def _unpaired(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int, n_perm: int) -> dict[str, Any]:
    """Two-sample: mean(x) - mean(y), each group resampled on its own (percentile interval), and
    a permutation test of the group labels (two-sided)."""
    from scipy import stats as sps

    out = {"n": int(min(x.size, y.size)), "unit": "photos (unpaired)"}
    if x.size == 0 or y.size == 0:
        return {**out, "difference": None, "low": None, "high": None, "p": None}
    rng = np.random.default_rng(seed)
    boot = rng.choice(x, (n_boot, x.size)).mean(1) - rng.choice(y, (n_boot, y.size)).mean(1)
    low, high = np.quantile(boot, [0.025, 0.975])
    res = sps.permutation_test(
        (x, y),
        lambda a, b, axis: np.mean(a, axis=axis) - np.mean(b, axis=axis),
        permutation_type="independent",
        vectorized=True,
        n_resamples=n_perm,
        alternative="two-sided",
        rng=seed,
    )
    return {
        **out,
        "n_a": int(x.size),
        "n_b": int(y.size),
        "difference": float(x.mean() - y.mean()),
        "low": float(low),
        "high": float(high),
        "p": min(1.0, float(res.pvalue)),
    }


def chance(labels: pd.DataFrame, attr: str) -> dict[str, Any]:
    """The set's own chance level: the majority class's share (and name) of its labelled faces;
    for age, the mean absolute error of guessing its median age."""
    have = labels[attr].dropna()
    if attr == "age":
        ages = have.to_numpy(float)
        return {
            "mae": float(np.abs(ages - np.median(ages)).mean()),
            "guess": float(np.median(ages)),
        }
    names = dict(ATTRS)[attr]
    counts = have.astype(int).value_counts()
    return {
        "accuracy": float(counts.iloc[0] / counts.sum()),
        "majority": names[int(counts.index[0])],
        "balanced_accuracy": 1.0 / len(counts) if len(counts) else None,
        "classes": int(len(counts)),
    }


def verdict(row: Mapping[str, Any], alpha: float) -> str:
    """``lower`` / ``higher`` (the first version's score against the second's) where Holm's p is
    under ``alpha``; else ``no difference shown``."""
    if row.get("p_holm") is None or row["difference"] is None:
        return "not tested"
    if row["p_holm"] >= alpha:
        return "no difference shown"
    return "higher" if row["difference"] > 0 else "lower"


def analyse(
    manifest: pd.DataFrame,
    predictions: Mapping[tuple[str, str], Mapping[int, pd.DataFrame]],
    painted: list[str],
    cfg: Mapping[str, Any],
) -> dict[str, Any] | None:
    """One set's real-mask comparison for one attacker (``predictions``: (version, training set)
    -> seed -> predictions, as :func:`maskprivacy.analysis.external.from_inputs` reads them);
    None when the set has no photo with a real mask. ``painted``: the mask sets (versions)."""
    worn = worn_flags(manifest)
    if not worn.any():
        return None
    n_boot, seed = int(cfg["bootstrap"]), int(cfg["seed"])
    n_perm, alpha = int(cfg.get("permutations", 9999)), float(cfg.get("alpha", 0.05))
    persons = PERSON in manifest and manifest[PERSON].notna().all()
    attrs = [a for a in ("sex", "race", "age") if manifest[a].notna().any()]
    trains = sorted({t for _, t in predictions})
    ens = {
        key: ensemble_predictions([by_seed[s] for s in sorted(by_seed)])
        for key, by_seed in predictions.items()
    }
    scores = {(v, t, a): face_scores(manifest, p, a) for (v, t), p in ens.items() for a in attrs}
    pairs = [(WORN, NONE, "real mask - no mask")]
    pairs += [(m, NONE, f"painted ({m}) - no mask") for m in painted]
    pairs += [(WORN, m, f"real mask - painted ({m})") for m in painted]
    rows = []
    for t in trains:
        for a in attrs:
            for va, vb, label in pairs:
                if (va, t, a) not in scores or (vb, t, a) not in scores:
                    continue
                same = va != WORN and vb != WORN  # painted and none: the same photos
                d = difference(
                    scores[(va, t, a)], scores[(vb, t, a)], persons, same, n_boot, seed, n_perm
                )
                rows.append(
                    {"train": t, "attribute": a, "a": va, "b": vb, "comparison": label, **d}
                )
    for r, p in zip(rows, stats.holm([r["p"] for r in rows]), strict=True):
        r["p_holm"] = p
        r["verdict"] = verdict(r, alpha)
    by_type = {}
    if MASK_TYPE in manifest:
        types = manifest.loc[worn, MASK_TYPE].fillna("").replace("", "worn")
        for t in trains:
            s = scores.get((WORN, t, attrs[0])) if attrs else None
            if s is None or s.empty:
                continue
            m = s.merge(
                pd.DataFrame({"file": manifest.loc[worn, "file"], "type": types}), on="file"
            )
            by_type[t] = {
                k: {"n": int(len(g)), "mean": float(g["score"].mean())}
                for k, g in m.groupby("type", sort=True)
            }
    return {
        "attributes": attrs,
        "unit": "persons" if persons else "photos",
        "persons": int(manifest[PERSON].nunique()) if persons else None,
        "photos": {"worn": int(worn.sum()), "not_worn": int((~worn).sum())},
        "chance": {a: chance(manifest, a) for a in attrs},
        "comparisons": rows,
        "by_type": {"attribute": attrs[0] if attrs else None, "by_train": by_type},
        "holm_scope": "this attacker's comparisons on this set",
        "alpha": alpha,
    }


def painted_vs_real(result: Mapping[str, Any], train: str, attr: str) -> dict[str, Any] | None:
    """How a painted mask's cost compares with a real one's, for one model and attribute: the
    real - painted rows (one per mask set) and the one-word reading: ``understate`` (the real
    mask costs the attacker more), ``overstate`` (less), ``no difference shown``, or ``mixed``."""
    rows = [
        r
        for r in result["comparisons"]
        if r["train"] == train and r["attribute"] == attr and r["a"] == WORN and r["b"] != NONE
    ]
    if not rows:
        return None
    worse = LOWER_IS_BETTER[attr]
    words = set()
    for r in rows:
        if r["verdict"] in ("lower", "higher"):
            real_costs_more = (r["verdict"] == "higher") if worse else (r["verdict"] == "lower")
            words.add("understate" if real_costs_more else "overstate")
        else:
            words.add("no difference shown")
    word = words.pop() if len(words) == 1 else "mixed"
    return {"reading": word, "rows": rows}
