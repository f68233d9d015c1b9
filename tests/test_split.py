import numpy as np
import pandas as pd
import pytest

from maskprivacy.split import run, stratified_split


def table(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.integers(0, 90, n)
    return pd.DataFrame(
        {
            "file": [f"{i:05d}.jpg" for i in range(n)],
            "age": age,
            "sex": rng.integers(0, 2, n),
            "race": rng.choice(5, n, p=[0.45, 0.2, 0.15, 0.15, 0.05]),
            "age_bucket": np.digitize(age, [4, 13, 20, 31, 46, 61]),
        }
    )


def test_fractions_and_strata_are_kept():
    t = table()
    part = stratified_split(t, (0.8, 0.1, 0.1), seed=1)
    counts = part.value_counts()
    assert abs(counts["train"] - 1600) <= 20 and abs(counts["test"] - 200) <= 20
    # every sizeable stratum is split in proportion (largest remainder: within one image each)
    for _, g in t.assign(part=part).groupby(["sex", "race", "age_bucket"]):
        if len(g) >= 30:
            share = g["part"].value_counts(normalize=True)
            assert abs(share.get("test", 0) - 0.1) <= 1 / len(g) + 1e-9
            assert abs(share.get("train", 0) - 0.8) <= 1 / len(g) + 1e-9


def test_deterministic_and_order_free():
    t = table()
    a = stratified_split(t, seed=5)
    b = stratified_split(t.sample(frac=1, random_state=3), seed=5).reindex(t.index)
    assert a.equals(b)
    assert not a.equals(stratified_split(t, seed=6))


def test_every_row_gets_exactly_one_part():
    t = table(137)
    part = stratified_split(t, (0.7, 0.15, 0.15), seed=0)
    assert part.notna().all() and set(part) <= {"train", "val", "test"}


def test_bad_fractions_raise():
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(table(10), (0.5, 0.1, 0.1))


def test_run_keeps_only_images_every_condition_has():
    t = table(50)
    present = [set(t["file"]), set(t["file"][:45])]
    out, rejects, summary = run({"fractions": [0.8, 0.1, 0.1], "seed": 0}, t, present)
    assert len(out) == 45 and len(rejects) == 5
    assert set(rejects["reason"]) == {"not_in_every_condition"}
    assert set(out["file"]) | set(rejects["file"]) == set(t["file"])
