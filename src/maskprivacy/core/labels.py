"""UTKFace labels: parsing file names, label vocabularies and the paper's age buckets.

File names read ``[age]_[gender]_[race]_[date&time].jpg`` (aligned & cropped files add
``.chip.jpg``): age 0-116, gender 0 male / 1 female, race 0 White, 1 Black, 2 Asian,
3 Indian, 4 Others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEXES = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
AGE_MAX = 116
# The paper's seven age groups (Seneviratne et al. 2021): name, lowest age, highest age.
AGE_BUCKETS = (
    ("Baby", 0, 3),
    ("Child", 4, 12),
    ("Teen", 13, 19),
    ("Young", 20, 30),
    ("Adult", 31, 45),
    ("MiddleAged", 46, 60),
    ("Senior", 61, AGE_MAX),
)
# The first age of buckets 1.. (bucket k holds ages from AGE_BUCKET_STARTS[k - 1] up): the bounds
# for a vectorised bucketing (``np.searchsorted(..., side="right")``, ``torch.bucketize(right=True)``).
AGE_BUCKET_STARTS = tuple(lo for _, lo, _ in AGE_BUCKETS[1:])
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

_NAME = re.compile(
    r"^(?P<age>\d+)_(?P<sex>\d+)_(?P<race>\d+)_(?P<stamp>\d{17})\.jpg(\.chip\.jpg)?$"
)


class LabelError(ValueError):
    """A file name that does not carry valid UTKFace labels; the message says why."""


@dataclass(frozen=True)
class Labels:
    age: int
    sex: int
    race: int

    @property
    def age_bucket(self) -> int:
        return age_bucket(self.age)


def parse_name(name: str, strict: bool = False) -> Labels:
    """Parse a UTKFace file name into labels, or raise :class:`LabelError` with the reason.

    The age, gender and race fields must always be valid. A malformed date/time field or
    extension (four published files, see ``name_problem``) is an error only when ``strict``.
    """
    parts = name.split("_")
    if len(parts) < 4:
        raise LabelError(f"expected age_gender_race_datetime, got {len(parts)} field(s)")
    age_s, sex_s, race_s = parts[0], parts[1], parts[2]
    for field, value in (("age", age_s), ("gender", sex_s), ("race", race_s)):
        if not value.isdigit():
            raise LabelError(f"{field} field {value!r} is not a whole number")
    age, sex, race = int(age_s), int(sex_s), int(race_s)
    if not 0 <= age <= AGE_MAX:
        raise LabelError(f"age {age} outside 0-{AGE_MAX}")
    if sex not in (0, 1):
        raise LabelError(f"gender {sex} is not 0 (male) or 1 (female)")
    if not 0 <= race < len(RACES):
        raise LabelError(f"race {race} is not 0-{len(RACES) - 1}")
    if strict and (problem := name_problem(name)):
        raise LabelError(problem)
    return Labels(age=age, sex=sex, race=race)


def name_problem(name: str) -> str:
    """Why a name with valid labels is still not a well-formed UTKFace name ('' when it is)."""
    if _NAME.match(name):
        return ""
    return "malformed date/time field or extension (want 17 digits then .jpg)"


def age_bucket(age: int) -> int:
    for i, (_, lo, hi) in enumerate(AGE_BUCKETS):
        if lo <= age <= hi:
            return i
    raise ValueError(f"age {age} outside 0-{AGE_MAX}")


def utk_name(age: int, sex: int, race: int, stamp: int) -> str:
    """Build a UTKFace-style name (aligned & cropped form) from labels and a 17-digit stamp."""
    return f"{age}_{sex}_{race}_{stamp:017d}.jpg.chip.jpg"
