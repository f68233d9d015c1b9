"""The recognizer attacker: heads on an off-the-shelf face recognizer's embedding.

A real attacker rarely trains a network for the purpose: it takes a face recognizer that
exists and reads its embedding. Here that recognizer is dlib's
``dlib_face_recognition_resnet_model_v1.dat`` (the ``identity`` stage's descriptors of the
unmasked faces, the ``describe`` stage's of each mask set's masked faces: 128 numbers a face),
and the heads are scikit-learn's, each a standardisation then:

- sex, race: multinomial logistic regression (``LogisticRegressionCV``), its L2 strength chosen
  by stratified ``recognize.cv``-fold cross-validation on the training part among
  ``recognize.strengths`` (C = 1 / strength);
- age: ridge regression (``RidgeCV``), its strength chosen among the same values by
  ``recognize.cv``-fold cross-validation; predictions clipped to [0, 116] years.

One set of heads per training set (the faces of one version: unmasked or a mask set) and seed
(``train.seeds``: the seed draws the cross-validation folds), fitted on the split's training
part and scored on the test part of every condition's test set, so each condition and seed gets
a predictions table in the format of the CNN's ``evaluate`` (file, condition, sex_pred,
race_pred, age_pred, sex_prob_female, race_prob_0..4) and compare reuses its statistics. A
linear head is deterministic given its data: the seeds differ only by the folds that choose the
strength, so their spread is small (often nil; the test across seeds then says so).

A face without a descriptor in a version (dlib refused it: the ``identity`` or ``describe``
rejects) is left out of training; on test it is predicted from the training prior (majority
class, class frequencies, median age) so that every condition stays on the same test faces,
and it is listed in the recognizer's rejects with reason ``no_descriptor``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from maskprivacy.core.labels import AGE_MAX, RACES, SEXES
from maskprivacy.core.plumbing import atomic_path
from maskprivacy.faces.descriptors import read_descriptors

DEFAULTS: dict[str, Any] = {"cv": 3, "strengths": [0.01, 0.1, 1.0, 10.0, 100.0], "head": "linear"}
HEADS = ("linear", "mlp")
HIDDEN = 128  # the MLP head's one hidden layer (ReLU units)
MLP_BATCH = 32  # its minibatch (clipped to the training part's size)


@dataclass
class Heads:
    """The fitted heads of one training set and seed, and the training prior (for faces
    without a descriptor)."""

    sex: Any
    race: Any
    age: Any
    prior_sex: np.ndarray  # class frequencies on the training part, (2,)
    prior_race: np.ndarray  # (5,)
    median_age: float
    chosen: dict[str, float]  # the strength cross-validation chose per head


def load_versions(tables: dict[str, Sequence[str | os.PathLike]]) -> dict[str, pd.DataFrame]:
    """Each version's descriptors (its shards' tables) as an (N, 128) float32 frame by file."""
    out = {}
    for version, paths in tables.items():
        files, x = read_descriptors(paths)
        out[version] = pd.DataFrame(x, index=pd.Index(files, name="file"))
    return out


def _folds(cfg: dict[str, Any], seed: int, stratified: bool):
    from sklearn.model_selection import KFold, StratifiedKFold

    kind = StratifiedKFold if stratified else KFold
    return kind(int(cfg["cv"]), shuffle=True, random_state=seed)


def _mlp(kind: str, seed: int):
    """One hidden layer of ``HIDDEN`` ReLU units (adam on batches of ``MLP_BATCH``: scikit-learn's
    default, 200, takes one step an epoch on a small set and early stopping then ends it before
    it learns), early stopping when a held-out tenth of the training data
    (``validation_fraction``) has not improved for 10 epochs; weights, batches and that tenth
    drawn from ``seed``."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    model = MLPClassifier if kind == "classifier" else MLPRegressor
    return model(
        hidden_layer_sizes=(HIDDEN,),
        early_stopping=True,
        validation_fraction=0.1,
        batch_size=MLP_BATCH,
        n_iter_no_change=10,
        max_iter=500,
        random_state=seed,
    )


def _classifier(cfg: dict[str, Any], seed: int, threads: int):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = _folds(cfg, seed, stratified=True)
    if cfg["head"] == "mlp":  # its L2 strength (alpha) chosen by the same cross-validation
        from sklearn.model_selection import GridSearchCV

        grid = {"alpha": [float(s) for s in cfg["strengths"]]}
        head = GridSearchCV(
            _mlp("classifier", seed), grid, cv=folds, scoring="accuracy", n_jobs=threads
        )
        return make_pipeline(StandardScaler(), head)
    from sklearn.linear_model import LogisticRegressionCV

    return make_pipeline(
        StandardScaler(),
        LogisticRegressionCV(
            # from the strongest strength to the weakest: each C's fit starts from the previous
            # one's weights (lbfgs warm start), and the weakly regularised fits, the slow ones,
            # start close to their optimum; a tie goes to the stronger strength
            Cs=sorted(1.0 / float(s) for s in cfg["strengths"]),
            cv=folds,
            max_iter=2000,
            n_jobs=threads,
            scoring="accuracy",
            l1_ratios=(0.0,),  # L2 only
            use_legacy_attributes=False,
        ),
    )


def _regressor(cfg: dict[str, Any], seed: int, threads: int = 1):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = _folds(cfg, seed, stratified=False)
    alphas = [float(s) for s in cfg["strengths"]]
    if cfg["head"] == "mlp":  # on standardised ages (back to years on predict)
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.model_selection import GridSearchCV

        mlp = TransformedTargetRegressor(_mlp("regressor", seed), transformer=StandardScaler())
        head = GridSearchCV(
            mlp,
            {"regressor__alpha": alphas},
            cv=folds,
            scoring="neg_mean_absolute_error",
            n_jobs=threads,
        )
        return make_pipeline(StandardScaler(), head)
    from sklearn.linear_model import RidgeCV

    return make_pipeline(
        StandardScaler(), RidgeCV(alphas=alphas, cv=folds, scoring="neg_mean_absolute_error")
    )


def _strength(model: Any) -> float:
    """The L2 strength cross-validation chose for a fitted head (as ``recognize.strengths``
    names it)."""
    head = model[-1]
    if hasattr(head, "best_params_"):  # mlp: GridSearchCV over alpha
        return float(next(iter(head.best_params_.values())))
    if hasattr(head, "C_"):  # logistic: C = 1 / strength
        return 1.0 / float(np.ravel(head.C_)[0])
    return float(head.alpha_)  # ridge


def _frequencies(y: np.ndarray, n: int) -> np.ndarray:
    counts = np.bincount(y.astype(int), minlength=n).astype(float)
    return counts / counts.sum()


def fit_heads(
    x: np.ndarray, labels: pd.DataFrame, cfg: dict[str, Any], seed: int, threads: int = 1
) -> Heads:
    """Fit the three heads on descriptors ``x`` (N, 128) and ``labels`` (sex, race, age)."""
    cfg = {**DEFAULTS, **(cfg or {})}
    if cfg["head"] not in HEADS:
        raise ValueError(f"recognize: head {cfg['head']!r} is not one of {HEADS}")
    x = np.asarray(x, dtype=np.float64)  # lbfgs converges faster in float64 here
    sex, race = labels["sex"].to_numpy(int), labels["race"].to_numpy(int)
    age = labels["age"].to_numpy(float)
    for attr, y in (("sex", sex), ("race", race)):
        if len(np.unique(y)) < 2:
            raise ValueError(f"recognize: the training part has one {attr} class only")
    with warnings.catch_warnings():
        # lbfgs may stop short on the weakest strength of the grid: that point is then scored
        # as it stands by the cross-validation, which picks among all of them
        warnings.filterwarnings("ignore", message=".*(converge|ITERATIONS).*")
        # a class rarer than the folds (small data sets) is missing from some folds' training:
        # scikit-learn fits every class in every fold all the same
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        heads = [_classifier(cfg, seed, threads).fit(x, y) for y in (sex, race)]
        ridge = _regressor(cfg, seed, threads).fit(x, age)
    return Heads(
        sex=heads[0],
        race=heads[1],
        age=ridge,
        prior_sex=_frequencies(sex, len(SEXES)),
        prior_race=_frequencies(race, len(RACES)),
        median_age=float(np.median(age)),
        chosen={"sex": _strength(heads[0]), "race": _strength(heads[1]), "age": _strength(ridge)},
    )


def save_heads(path: str | os.PathLike, heads: Heads) -> None:
    """Write fitted heads (joblib's pickle, atomically): ``recognize`` keeps them so that the
    external test sets are scored by the very heads the UTKFace conditions were (no refit)."""
    import joblib

    with atomic_path(path, suffix=".joblib") as tmp:
        joblib.dump(heads, tmp)


def load_heads(path: str | os.PathLike) -> Heads:
    import joblib

    heads = joblib.load(path)
    if not isinstance(heads, Heads):
        raise ValueError(f"recognize: {path} holds no fitted heads")
    return heads


def _probabilities(model: Any, x: np.ndarray, n: int) -> np.ndarray:
    """(N, n) class probabilities, zero for a class the training part lacked."""
    p = np.zeros((len(x), n))
    if len(x):
        p[:, model[-1].classes_.astype(int)] = model.predict_proba(x)
    return p


def predict(heads: Heads, files: Sequence[str], version: pd.DataFrame, condition: str):
    """The predictions table (evaluate's format) of ``files`` from their descriptors in
    ``version``, and the files that have none there (predicted from the training prior)."""
    have = pd.Index(files).isin(version.index)
    x = version.loc[np.asarray(files)[have]].to_numpy(np.float64)
    sex = np.tile(heads.prior_sex, (len(files), 1))
    race = np.tile(heads.prior_race, (len(files), 1))
    age = np.full(len(files), heads.median_age)
    sex[have] = _probabilities(heads.sex, x, len(SEXES))
    race[have] = _probabilities(heads.race, x, len(RACES))
    if have.any():
        age[have] = np.clip(heads.age.predict(x), 0.0, float(AGE_MAX))
    df = pd.DataFrame(
        {
            "file": list(files),
            "condition": condition,
            "sex_pred": sex.argmax(1),
            "race_pred": race.argmax(1),
            "age_pred": age,
            "sex_prob_female": sex[:, 1],
        }
    )
    for k in range(race.shape[1]):
        df[f"race_prob_{k}"] = race[:, k]
    return df, [f for f, h in zip(files, have, strict=True) if not h]


def recognize(
    split: pd.DataFrame,
    versions: dict[str, pd.DataFrame],
    conditions: list[dict[str, str]],
    seeds: list[int],
    cfg: dict[str, Any],
    threads: int = 1,
    log: Any = None,
    keep: dict[tuple[str, int], Heads] | None = None,
) -> tuple[dict[tuple[str, int], pd.DataFrame], list[dict[str, str]], dict[str, Any]]:
    """Heads per training set and seed, tested on every condition's test set: the predictions
    per (condition, seed) on the split's test part (in its order), the rejects (faces without
    a descriptor) and a summary (faces used, the strengths chosen). ``keep``: a dict that gets
    the fitted heads by (training set, seed)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(max(1, int(threads))):  # BLAS as wide as the job's cores, no wider
        return _recognize(split, versions, conditions, seeds, cfg, threads, log, keep)


def _recognize(split, versions, conditions, seeds, cfg, threads, log, keep):
    train = split[split["split"] == "train"]
    test = split[split["split"] == "test"].reset_index(drop=True)
    if test.empty or train.empty:
        raise ValueError("recognize: the split needs a train and a test part")
    preds: dict[tuple[str, int], pd.DataFrame] = {}
    rejects: dict[tuple[str, str], dict[str, str]] = {}
    summary: dict[str, Any] = {"heads": {}}
    datasets = sorted({c["train"] for c in conditions})
    parts: dict[str, tuple[np.ndarray, pd.DataFrame]] = {}
    for dataset in datasets:
        version = versions[dataset]
        used = train[train["file"].isin(version.index)]
        for f in train.loc[~train["file"].isin(version.index), "file"]:
            rejects[(dataset, f)] = no_descriptor(f, dataset, "train")
        parts[dataset] = (version.loc[used["file"]].to_numpy(np.float32), used)
    fitted = _fit_all(parts, [(d, s) for d in datasets for s in seeds], cfg, threads)
    for dataset in datasets:
        used = parts[dataset][1]
        for seed in seeds:
            heads = fitted[(dataset, seed)]
            if keep is not None:
                keep[(dataset, seed)] = heads
            summary["heads"][f"{dataset} seed {seed}"] = {
                "n_train": int(len(used)),
                "strength_chosen": heads.chosen,
            }
            if log is not None:
                log.info("recognize: heads on %s, seed %s: %s", dataset, seed, heads.chosen)
            for cond in conditions:
                if cond["train"] != dataset:
                    continue
                df, missing = predict(
                    heads, test["file"].tolist(), versions[cond["test"]], cond["name"]
                )
                preds[(cond["name"], seed)] = df
                for f in missing:
                    rejects[(cond["test"], f)] = no_descriptor(f, cond["test"], "test")
    summary["n_no_descriptor"] = len(rejects)
    return preds, list(rejects.values()), summary


def _fit_all(
    parts: dict[str, tuple[np.ndarray, pd.DataFrame]],
    jobs: list[tuple[str, int]],
    cfg: dict[str, Any],
    threads: int,
) -> dict[tuple[str, int], Heads]:
    """The heads of every (training set, seed), ``threads`` fits at a time, each on one core:
    a fit's own parallelism (its folds, then one refit on all the data) keeps two cores busy
    only part of the time, and the fits are independent. The same heads as one after another."""
    threads = max(1, int(threads))
    if threads == 1 or len(jobs) == 1:
        return {(d, s): fit_heads(*parts[d], cfg, s, threads) for d, s in jobs}
    from joblib import Parallel, delayed

    fits = Parallel(n_jobs=min(threads, len(jobs)))(
        delayed(_fit_one)(*parts[d], cfg, s) for d, s in jobs
    )
    return dict(zip(jobs, fits, strict=True))


def _fit_one(x: np.ndarray, labels: pd.DataFrame, cfg: dict[str, Any], seed: int) -> Heads:
    """One fit in a worker, its BLAS on one core."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return fit_heads(x, labels, cfg, seed, 1)


def no_descriptor(file: str, version: str, part: str, stage: str = "recognize") -> dict[str, str]:
    """The reject row of a face without a descriptor in ``version``: left out of training
    (``part`` train), else predicted from the training prior."""
    what = (
        "left out of the heads' training"
        if part == "train"
        else "predicted from the training prior"
    )
    return {
        "file": file,
        "stage": stage,
        "reason": "no_descriptor",
        "detail": f"{version}: no descriptor ({part} part); {what}",
    }
