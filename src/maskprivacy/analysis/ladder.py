"""The attacker ladder: does the mask's cost depend on how strong the attacker is?

Each rung is one attacker, trained on the unmasked and on the masked training set of the same
split (one seed): ResNets of growing size, input side or training length, and the face
recognizer's heads. Per rung and attribute the ladder measures the attacker's unmasked score
(accuracy; MAE for age) and the mask's cost, ``ladder.condition`` minus ``compare.baseline``
on the same test faces, with a bootstrap 95% interval and a paired sign-flip test; then fits a
weighted straight line of cost on unmasked score (:func:`fit_trend`) and reads it at the
reference attackers (:data:`REFERENCES`: the GPU run, the paper).

Direction: for every attribute a positive slope means stronger attackers lose less to the mask
(accuracy: a higher unmasked accuracy goes with a cost nearer zero; age: a lower unmasked MAE
goes with a smaller rise in MAE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from maskprivacy.analysis import stats
from maskprivacy.analysis.paper_protocol import PAPER

ATTRS = ("sex", "race", "age")
RECOGNIZER = "recognizer"
# the train settings a rung may change (the rest of train: is the study's)
RUNG_KEYS = (
    "arch",
    "protocol",
    "weights",
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_epochs",
    "image_size",
)
# A rung's cost comes with compare's 95% bootstrap interval; its half-width over this z is the
# standard error the trend's weights use.
RUNG_LEVEL = 0.95
RUNG_Z = float(sps.norm.ppf((1 + RUNG_LEVEL) / 2))
# Attackers measured elsewhere, drawn beside the rungs but not fitted. The GPU run: ResNet-50 at
# 224 px, multitask, presets/utkface.yaml, one NVIDIA H200, 2026-11-27, earlier code (docs/
# results.md, "History: the GPU run of 2026-11-27"); unmasked score and masked - unmasked with
# their 95% intervals. The paper publishes masked figures only (no unmasked model of its own):
# the unmasked score at which the trend predicts the paper's masked score is solved for
# (:func:`at_masked_score`).
REFERENCES: dict[str, dict[str, Any]] = {
    "gpu": {
        "label": "GPU run: ResNet-50, 224 px (2026-11-27)",
        "sex": {"unmasked": 0.934, "cost": -0.021, "cost_low": -0.032, "cost_high": -0.010},
        "race": {"unmasked": 0.847, "cost": -0.021, "cost_low": -0.035, "cost_high": -0.008},
        "age": {"unmasked": 5.11, "cost": 0.81, "cost_low": 0.59, "cost_high": 1.03},
    },
    "paper": {
        "label": "paper: ResNet-50, 224 px, masked only",
        "sex": {"masked": PAPER["sex"]},
        "race": {"masked": PAPER["race"]},
        "age": {"masked": PAPER["age_mae"]},
    },
}


def resolve_rungs(train: Mapping[str, Any], ladder: Mapping[str, Any] | None) -> dict[str, Any]:
    """Each rung of ``ladder.rungs`` with the train settings it trains with: ``{name: {"changes",
    "settings", "reused", "arch", "image_size", "epochs"}}``. A rung that changes nothing (or
    changes a setting to the study's own value) is the study's own model (``reused``). Two rungs
    with the same settings, or a rung named like the recognizer's, are refused."""
    base = {k: v for k, v in train.items() if k != "seeds"}
    out: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for name, changes in ((ladder or {}).get("rungs") or {}).items():
        if name == RECOGNIZER:
            raise ValueError(
                f"ladder.rungs: {name!r} names the recognizer's rung (ladder.recognizer); "
                "give the CNN rung another name"
            )
        changes = dict(changes or {})
        unknown = sorted(set(changes) - set(RUNG_KEYS))
        if unknown:
            raise ValueError(
                f"ladder.rungs.{name}: {unknown} are not train settings a rung may change "
                f"({', '.join(RUNG_KEYS)})"
            )
        settings = {**base, **changes}
        key = repr(sorted(settings.items()))
        if key in seen:
            raise ValueError(
                f"ladder.rungs: {seen[key]!r} and {name!r} train the same models; drop one"
            )
        seen[key] = name
        out[name] = {
            "changes": changes,
            "settings": settings,
            "reused": settings == base,
            "arch": settings["arch"],
            "image_size": int(settings["image_size"]),
            "epochs": int(settings["epochs"]),
        }
    return out


def _interval(d: Mapping[str, Any]) -> dict[str, float | None]:
    return {"estimate": d["estimate"], "low": d["low"], "high": d["high"]}


def rung_statistics(
    test: pd.DataFrame,
    baseline: pd.DataFrame,
    condition: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    permutations: int = 9999,
) -> dict[str, Any]:
    """One rung: per attribute its unmasked score (``baseline``'s predictions) and the mask's
    cost (``condition``'s minus ``baseline``'s, paired over ``test``'s faces), each with a
    bootstrap 95% interval, and the cost's sign-flip p value. The predictions must be on
    ``test``'s faces, in its order."""
    for name, df in (("baseline", baseline), ("condition", condition)):
        if df["file"].tolist() != test["file"].tolist():
            raise ValueError(f"ladder: the {name}'s predictions are not on the split's test faces")
    out: dict[str, Any] = {"n": int(len(test))}
    for attr in ATTRS:
        y = test[attr].to_numpy()
        a, b = baseline[f"{attr}_pred"].to_numpy(), condition[f"{attr}_pred"].to_numpy()
        base = stats.seed_averaged_metric(attr, y, [a], n_boot, seed)
        d = stats.paired_difference(attr, y, [a], [b], n_boot, seed, permutations=permutations)
        out[attr] = {
            "metric": base["metric"],
            "unmasked": _interval(base),
            "masked": d["b"],
            "cost": {
                **_interval({**d["ci"], "estimate": d["difference"]}),
                "p": d["test"]["p_value"],
            },
        }
    return out


def fit_trend(
    x: Sequence[float], y: Sequence[float], se: Sequence[float] | None = None, level: float = 0.95
) -> dict[str, Any] | None:
    """A straight line ``y = intercept + slope * x`` by weighted least squares (weights 1/se²;
    equal weights without ``se``), with a ``level`` interval of the slope.

    The coefficients' covariance is ``(XᵀWX)⁻¹`` scaled by the residuals' dispersion (their
    weighted mean square over n - 2 degrees of freedom) when that exceeds 1: the points scatter
    about the line by more than their own intervals say, and the line's interval must show it;
    never narrower than the points' own errors allow. Intervals use Student's t with n - 2
    degrees of freedom. None with fewer than three points or a single x."""
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(xs)
    if n != len(ys):
        raise ValueError(f"fit_trend: {n} x values and {len(ys)} y values")
    if n < 3 or np.ptp(xs) == 0:
        return None
    if se is None:
        w = np.ones(n)
    else:
        s = np.asarray(se, dtype=float)
        if len(s) != n or not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("fit_trend: se must hold one positive number per point")
        w = 1.0 / s**2
    design = np.column_stack([np.ones(n), xs])
    xtw = design.T * w
    unscaled = np.linalg.inv(xtw @ design)
    coef = unscaled @ xtw @ ys
    resid = ys - design @ coef
    dof = n - 2
    dispersion = float(np.sum(w * resid**2) / dof)
    if se is None:
        scale = dispersion  # equal weights: the residuals are the only measure of error
    else:
        scale = max(1.0, dispersion)
    cov = unscaled * scale
    t = float(sps.t.ppf((1 + level) / 2, dof))
    slope_se = float(np.sqrt(cov[1, 1]))
    return {
        "intercept": float(coef[0]),
        "slope": float(coef[1]),
        "slope_low": float(coef[1] - t * slope_se),
        "slope_high": float(coef[1] + t * slope_se),
        "cov": cov.tolist(),
        "t": t,
        "dof": dof,
        "dispersion": dispersion,
        "n": n,
        "level": float(level),
        "x_range": [float(xs.min()), float(xs.max())],
    }


def predict(trend: Mapping[str, Any], x0: float) -> dict[str, float]:
    """The fitted line at ``x0`` with the ``level`` interval of the line (of the mean cost of
    an attacker that scores ``x0``, not of one more measurement)."""
    v = np.array([1.0, float(x0)])
    est = float(trend["intercept"] + trend["slope"] * x0)
    half = float(trend["t"] * np.sqrt(v @ np.asarray(trend["cov"]) @ v))
    return {"x": float(x0), "estimate": est, "low": est - half, "high": est + half}


def at_masked_score(trend: Mapping[str, Any], masked: float) -> float | None:
    """The unmasked score at which the trend's masked score (unmasked + cost) is ``masked``:
    x + intercept + slope·x = masked. None when the line cannot reach it (slope -1)."""
    if abs(1 + trend["slope"]) < 1e-9:
        return None
    return float((masked - trend["intercept"]) / (1 + trend["slope"]))


def direction(trend: Mapping[str, Any] | None) -> str:
    """``less``, ``more`` (stronger attackers lose less or more to the mask: the slope's interval
    is above or below zero) or ``unclear`` (it holds zero, or no trend could be fitted)."""
    if trend is None:
        return "unclear"
    if trend["slope_low"] > 0:
        return "less"
    if trend["slope_high"] < 0:
        return "more"
    return "unclear"


def _se(c: Mapping[str, Any]) -> float | None:
    if c.get("low") is None or c.get("high") is None:
        return None
    half = (c["high"] - c["low"]) / 2
    return half / RUNG_Z if half > 0 else None


def summarize(rungs: Mapping[str, Any], level: float = 0.95) -> dict[str, Any]:
    """The trend of each attribute over the rungs' points, the trend read at the references
    (the GPU run's unmasked score; the paper's masked score, solved for its unmasked one), the
    direction and Holm over the rungs' tests."""
    names = list(rungs)
    family = [(r, a) for r in names for a in ATTRS]
    adjusted = stats.holm([rungs[r]["stats"][a]["cost"]["p"] for r, a in family])
    for (r, a), p in zip(family, adjusted, strict=True):
        rungs[r]["stats"][a]["cost"]["p_holm"] = p
    cnn = [r for r in names if rungs[r].get("attacker") != "recognizer"]
    out: dict[str, Any] = {}
    for attr in ATTRS:
        trend = _fit(rungs, names, attr, level)
        entry: dict[str, Any] = {"trend": trend, "direction": direction(trend), "at": {}}
        if len(cnn) < len(names):  # the CNN rungs alone: one family of attackers
            alone = _fit(rungs, cnn, attr, level)
            entry["cnn_only"] = {"trend": alone, "direction": direction(alone)}
        if trend is not None:
            gpu = REFERENCES["gpu"][attr]
            entry["at"]["gpu"] = {
                **predict(trend, gpu["unmasked"]),
                "measured": gpu["cost"],
                "measured_low": gpu["cost_low"],
                "measured_high": gpu["cost_high"],
            }
            x_paper = at_masked_score(trend, REFERENCES["paper"][attr]["masked"])
            # read only within the rungs' span and as far again beyond it (and at an accuracy
            # of at most 100%, an MAE above 0): further out the line is a guess
            lo, hi = trend["x_range"]
            near = x_paper is not None and lo - (hi - lo) <= x_paper <= hi + (hi - lo)
            valid = x_paper is not None and (0 <= x_paper <= 1 if attr != "age" else x_paper > 0)
            if near and valid:
                entry["at"]["paper"] = predict(trend, x_paper)
            else:
                entry["paper_unreachable"] = True
        out[attr] = entry
    return out


def _fit(rungs: Mapping[str, Any], names: Sequence[str], attr: str, level: float) -> Any:
    pts = [rungs[r]["stats"][attr] for r in names]
    ses = [_se(p["cost"]) for p in pts]
    return fit_trend(
        [p["unmasked"]["estimate"] for p in pts],
        [p["cost"]["estimate"] for p in pts],
        ses if all(s is not None for s in ses) else None,
        level,
    )


def _unit(attr: str) -> str:
    return "years" if attr == "age" else "pt"


def number(attr: str, v: float, sign: bool = True) -> str:
    """``v`` as the ladder writes it: age in years (2 decimals), sex and race in points."""
    if attr == "age":
        return f"{v:+.2f}" if sign else f"{v:.2f}"
    return f"{100 * v:+.1f}" if sign else f"{100 * v:.1f}"


def with_interval(attr: str, p: Mapping[str, Any], sign: bool = True) -> str:
    """``p["estimate"]`` and, where it has both, its interval ``[low, high]``."""
    est = number(attr, p["estimate"], sign)
    if p.get("low") is None or p.get("high") is None:
        return est
    return f"{est} [{number(attr, p['low'], sign)}, {number(attr, p['high'], sign)}]"


def sentence(ladder: Mapping[str, Any]) -> str:
    """One sentence per attribute: do stronger attackers lose less, the same or more to the
    mask, and what the trend predicts at the paper's (and the GPU run's) unmasked score."""
    trends = ladder["trends"]
    parts = []
    for attr in ATTRS:
        t = trends[attr]
        if t["trend"] is None:
            parts.append(f"{attr}: too few rungs for a trend")
            continue
        tr = t["trend"]
        unit = _unit(attr)
        score = "MAE" if attr == "age" else "accuracy"
        slope = (
            f"{number(attr, 0.1 * tr['slope'])} pt of cost per 10 pt of unmasked accuracy "
            f"[{number(attr, 0.1 * tr['slope_low'])}, {number(attr, 0.1 * tr['slope_high'])}]"
        )
        if attr == "age":  # per year of unmasked MAE: positive, weaker attackers lose more
            slope = (
                f"{tr['slope']:+.2f} years of cost per year of unmasked MAE "
                f"[{tr['slope_low']:+.2f}, {tr['slope_high']:+.2f}]"
            )
        verdict = {
            "less": "stronger attackers lose less to the mask",
            "more": "stronger attackers lose more to the mask",
            "unclear": "no dependence on the attacker's strength shown",
        }[t["direction"]]
        text = f"{attr}: {verdict} ({slope})"
        alone = t.get("cnn_only")
        if alone is not None and alone["trend"] is not None:
            a = alone["trend"]
            k = 1.0 if attr == "age" else 0.1
            text += (
                f", the CNN rungs alone {number(attr, k * a['slope'])} "
                f"[{number(attr, k * a['slope_low'])}, {number(attr, k * a['slope_high'])}]"
            )
        if t.get("paper_unreachable"):
            lo, hi = tr["x_range"]
            text += (
                f"; it meets the paper's masked {score} "
                f"({number(attr, REFERENCES['paper'][attr]['masked'], False)}) only far beyond the "
                f"rungs' unmasked {score} ({number(attr, lo, False)} to {number(attr, hi, False)}), "
                "so it says nothing of the paper's attacker"
            )
        at = t["at"]
        if "paper" in at:
            text += (
                f"; at the paper's level (unmasked {score} {number(attr, at['paper']['x'], False)})"
                f" the trend predicts {with_interval(attr, at['paper'])} {unit}"
            )
        if "gpu" in at:
            text += (
                f"; at the GPU run's {number(attr, at['gpu']['x'], False)} it predicts "
                f"{with_interval(attr, at['gpu'])}, measured {number(attr, at['gpu']['measured'])}"
            )
        parts.append(text)
    return "Across the ladder's attackers, " + "; ".join(parts) + "."


def metrics(ladder: Mapping[str, Any]) -> dict[str, Any]:
    """What results/ladder/metrics.json keeps (DVC metrics: ``dvc metrics show`` lists the rungs
    side by side): per rung and attribute the unmasked score and the cost with its interval;
    per attribute the slope with its interval and the cost predicted at the paper's level."""
    out: dict[str, Any] = {"rungs": {}, "trend": {}}
    for name, r in ladder["rungs"].items():
        out["rungs"][name] = {
            attr: {
                "unmasked": r["stats"][attr]["unmasked"]["estimate"],
                "cost": r["stats"][attr]["cost"]["estimate"],
                "cost_low": r["stats"][attr]["cost"]["low"],
                "cost_high": r["stats"][attr]["cost"]["high"],
            }
            for attr in ATTRS
        }
    for attr in ATTRS:
        t = ladder["trends"][attr]
        if t["trend"] is None:
            continue
        out["trend"][attr] = {
            "slope": t["trend"]["slope"],
            "slope_low": t["trend"]["slope_low"],
            "slope_high": t["trend"]["slope_high"],
            "direction": t["direction"],
            **({"cost_at_paper": t["at"]["paper"]["estimate"]} if "paper" in t["at"] else {}),
        }
    return out
