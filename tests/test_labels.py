import pytest

from maskprivacy.core.labels import (
    AGE_BUCKETS,
    LabelError,
    age_bucket,
    name_problem,
    parse_name,
    utk_name,
)


def test_parse_good_name():
    lab = parse_name("26_1_2_20170116174525125.jpg.chip.jpg")
    assert (lab.age, lab.sex, lab.race) == (26, 1, 2)
    assert lab.age_bucket == 3  # Young 20-30


@pytest.mark.parametrize(
    "name, reason",
    [
        ("39_1_20170116174525125.jpg.chip.jpg", "field"),  # race missing (a published defect)
        ("x_1_2_20170116174525125.jpg.chip.jpg", "age"),
        ("26_2_2_20170116174525125.jpg.chip.jpg", "gender"),
        ("26_1_7_20170116174525125.jpg.chip.jpg", "race"),
        ("117_1_2_20170116174525125.jpg.chip.jpg", "age"),
        ("readme.txt", "field"),
    ],
)
def test_bad_names_say_why(name, reason):
    with pytest.raises(LabelError, match=reason):
        parse_name(name)


@pytest.mark.parametrize(
    "name, labels",
    [
        ("55_0_0_20170116232725357jpg.chip.jpg", (55, 0, 0)),  # missing dot (published)
        ("24_0_1_20170116220224657 .jpg.chip.jpg", (24, 0, 1)),  # space (published)
        ("14_0_0_2017011022340900.jpg.chip.jpg", (14, 0, 0)),  # 16 digits (published)
    ],
)
def test_malformed_date_is_note_unless_strict(name, labels):
    lab = parse_name(name)
    assert (lab.age, lab.sex, lab.race) == labels
    assert name_problem(name)
    with pytest.raises(LabelError, match="malformed"):
        parse_name(name, strict=True)


def test_age_buckets_cover_every_age_once():
    for age in range(0, 117):
        hits = [i for i, (_, lo, hi) in enumerate(AGE_BUCKETS) if lo <= age <= hi]
        assert hits == [age_bucket(age)]
    assert [age_bucket(a) for a in (0, 3, 4, 12, 13, 19, 20, 30, 31, 45, 46, 60, 61)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
        5,
        5,
        6,
    ]


def test_utk_name_round_trips():
    name = utk_name(7, 0, 4, 20260101000000042)
    lab = parse_name(name, strict=True)
    assert (lab.age, lab.sex, lab.race) == (7, 0, 4)
