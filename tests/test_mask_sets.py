"""mask.sets: set names and their refusals, the study's conditions, and how each mask type covers
the landmarks and leaves the face visible (on fixed landmarks: no dlib)."""

from __future__ import annotations

import numpy as np
import pytest
from test_masks import HOPPER

from maskprivacy.masks import coverage, sets
from maskprivacy.masks.geometry import MASK_TYPES

STUDY = {
    "paper": {"paper": 1},
    "surgical": {"surgical": 1},
    "mixed": {"surgical": 1, "n95": 1, "kn95": 1, "cloth": 2},
}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"unmasked": {"paper": 1}}, "'unmasked' is reserved"),
        ({"Paper": {"paper": 1}}, "must be a lower-case letter"),
        ({"1st": {"paper": 1}}, "must be a lower-case letter"),
        ({"a/b": {"paper": 1}}, "must be a lower-case letter"),
        ({}, "expected a mapping"),
        (["paper"], "expected a mapping"),
    ],
)
def test_set_names_refuse(spec, message):
    with pytest.raises(ValueError, match=message):
        sets.set_names(spec)


def test_set_params_are_one_jobs_mask_params():
    mask = {"sets": STUDY, "textures": ["dots"], "seed": 4, "jpeg_quality": 90}
    assert sets.set_names(STUDY) == ["paper", "surgical", "mixed"]
    assert sets.set_params(mask, "mixed") == {
        "textures": ["dots"],
        "seed": 4,
        "jpeg_quality": 90,
        "types": {"surgical": 1, "n95": 1, "kn95": 1, "cloth": 2},
    }
    with pytest.raises(ValueError, match="no set 'n95'; sets: paper, surgical, mixed"):
        sets.set_params(mask, "n95")


def test_data_sets_and_conditions():
    assert sets.data_sets(STUDY) == ["unmasked", "paper", "surgical", "mixed"]
    conds = sets.study_conditions(STUDY)
    assert len(conds) == 16 and len({c["name"] for c in conds}) == 16
    assert {"name": "mixed_to_paper", "train": "mixed", "test": "paper"} in conds
    assert {"name": "surgical", "train": "surgical", "test": "surgical"} in conds


def test_used_sets_are_those_the_conditions_name():
    conds = [
        {"name": "unmasked", "train": "unmasked", "test": "unmasked"},
        {"name": "mixed_to_paper", "train": "mixed", "test": "paper"},
    ]
    assert sets.used_sets(STUDY, conds) == {"paper": STUDY["paper"], "mixed": STUDY["mixed"]}
    assert sets.used_sets(STUDY, conds[:1]) == {}


def test_by_set_groups_the_shards_files():
    files = ["data/mask/a/0/masks.csv", "data/mask/b/0/masks.csv", "data/mask/a/1/masks.csv"]
    assert sets.by_set(files) == {
        "a": ["data/mask/a/0/masks.csv", "data/mask/a/1/masks.csv"],
        "b": ["data/mask/b/0/masks.csv"],
    }


def test_every_type_covers_nose_mouth_chin_and_leaves_the_eyes():
    summary = coverage.coverage_summary([HOPPER], (224, 224))
    assert list(summary) == list(MASK_TYPES)
    for t, s in summary.items():
        assert s["n"] == 1 and s["geometry_pass"] == 1.0, t
        g = s["groups"]
        assert g["nose_tip"] == g["mouth"] == g["chin"] == 1.0, t
        assert g["eyes"] == g["brows"] == 0.0, t
        assert 0.3 < s["face_visible"] < 0.5, t  # the eyes, brows, cheeks' top: about 40%
    # paper's flat polygon reaches point 27 between the eyes; the others stop lower on the bridge
    assert summary["paper"]["groups"]["nose_bridge"] == 1.0
    assert summary["surgical"]["groups"]["nose_bridge"] < 1.0


def test_coverage_follows_the_face_and_sees_a_bad_mask():
    """The same figures on the face rolled and scaled (shapes follow the landmarks); a face
    whose mouth sits under the eyes (no mask can cover both ways) fails the check."""
    c = (np.array([224, 224]) - 1) / 2
    th = np.deg2rad(15)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    rolled = ((HOPPER - c) @ rot.T + c + 0.5) * 2 - 0.5
    a = coverage.coverage(HOPPER, (224, 224), "kn95")
    b = coverage.coverage(rolled, (448, 448), "kn95")
    assert a["groups"] == b["groups"]
    assert b["face_visible"] == pytest.approx(a["face_visible"], abs=0.02)
    odd = HOPPER.copy()
    odd[48:68, 1] = HOPPER[36:48, 1].mean()  # the mouth at eye height
    bad = coverage.coverage(odd, (224, 224), "surgical")
    assert not bad["geometry_ok"] and bad["groups"]["mouth"] < 1.0


def test_set_coverage_weights_the_types_as_drawn():
    summary = coverage.coverage_summary([HOPPER], (224, 224))
    cov = coverage.set_coverage(summary, STUDY)
    assert cov["paper"]["face_visible"] == summary["paper"]["face_visible"]
    mixed = cov["mixed"]
    assert mixed["types"] == {"surgical": 0.2, "n95": 0.2, "kn95": 0.2, "cloth": 0.4}
    want = sum(p * summary[t]["face_visible"] for t, p in mixed["types"].items())
    assert mixed["face_visible"] == pytest.approx(want)
    with pytest.raises(ValueError, match="no coverage of cloth"):
        coverage.set_coverage({t: summary[t] for t in ("paper", "surgical")}, {"c": {"cloth": 1}})
    with pytest.raises(ValueError, match=r"mask.sets.x: unknown 'scarf'"):
        coverage.set_coverage(summary, {"x": {"scarf": 1}})
    with pytest.raises(ValueError, match="no faces"):
        coverage.coverage_summary([], (224, 224))


def test_study_preset_is_utkface_with_every_set_and_the_full_matrix():
    import yaml
    from conftest import ROOT

    from maskprivacy.core.params import validate

    study = validate(
        yaml.safe_load((ROOT / "presets/mask_study.yaml").read_text()),
        ROOT / "workflow/schemas/params.schema.yaml",
    )
    base = yaml.safe_load((ROOT / "presets/utkface.yaml").read_text())
    assert study["mask"]["sets"] == {
        "paper": {"paper": 1},
        "surgical": {"surgical": 1},
        "n95": {"n95": 1},
        "kn95": {"kn95": 1},
        "cloth": {"cloth": 1},
        "mixed": {"surgical": 1, "n95": 1, "kn95": 1, "cloth": 1},
    }
    assert study["evaluate"]["conditions"] == sets.study_conditions(study["mask"]["sets"])
    assert len(study["evaluate"]["conditions"]) == 49 and set(study) == set(base)
    assert study["train"]["seeds"] == base["train"]["seeds"] == [0, 1, 2]
    assert study["compare"]["baseline"] == "unmasked"
    for section in base:
        if section == "mask":
            assert {k: v for k, v in study[section].items() if k != "sets"} == {
                k: v for k, v in base[section].items() if k != "sets"
            }
        elif section == "evaluate":
            assert {**study[section], "conditions": None} == {**base[section], "conditions": None}
        else:
            assert study[section] == base[section], section
