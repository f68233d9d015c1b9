"""Loading and validating params.yaml against its JSON schema, with errors a person can act on."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from maskprivacy.core.compute import Compute

SCHEMA = Path("workflow/schemas/params.schema.yaml")
# the compute section's keys, once in train: (moved out so that changing them reruns nothing)
COMPUTE_KEYS = {f.name for f in fields(Compute)} - {"threads"}  # threads: the rule's, not a key


class ParamsError(ValueError):
    """params.yaml does not fit the schema; the message lists every problem with its key."""


def validate(params: dict[str, Any], schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    """Validate ``params``; raise :class:`ParamsError` naming each bad key. Returns ``params``."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.absolute_path)))
    problems = []
    for err in errors:
        key = ".".join(map(str, err.absolute_path)) or "(top level)"
        problems.append(f"  - {key}: {err.message}")
    names = {
        c["name"] for c in params.get("evaluate", {}).get("conditions", []) if isinstance(c, dict)
    }
    base = (params.get("compare") or {}).get("baseline")
    if names and base is not None and base not in names:
        problems.append(
            f"  - compare.baseline: {base!r} is not one of the conditions {sorted(names)}"
        )
    ladder = params.get("ladder") if isinstance(params.get("ladder"), dict) else {}
    cond = ladder.get("condition")
    if names and ladder.get("rungs") and cond is not None:
        if cond not in names:
            problems.append(
                f"  - ladder.condition: {cond!r} is not one of the conditions {sorted(names)}"
            )
        elif cond == base:
            problems.append(
                f"  - ladder.condition: {cond!r} is compare.baseline: the ladder measures another "
                "condition's cost against it (e.g. masked)"
            )
    if len(names) != len(params.get("evaluate", {}).get("conditions", [])):
        problems.append("  - evaluate.conditions: condition names must be unique")
    train = params.get("train")
    if isinstance(train, dict) and "seed" in train:
        problems.append(
            "  - train.seed: replaced by train.seeds, a list with one model per seed and "
            "training set (e.g. seeds: [0], or [0, 1, 2] to measure the spread across runs)"
        )
    for key in sorted(COMPUTE_KEYS & set(train if isinstance(train, dict) else ())):
        problems.append(
            f"  - train.{key}: moved to the top-level compute section (compute.{key}): how to "
            "compute, never what, so changing it reruns nothing"
        )
    mask = params.get("mask") if isinstance(params.get("mask"), dict) else {}
    if "types" in mask:
        problems.append(
            "  - mask.types: replaced by mask.sets, one masked data set per entry (name -> "
            f"{{type: weight}}): `types: {mask['types']}` is now `sets: {{masked: "
            f"{mask['types']}}}` (as a mapping of type -> weight)"
        )
    if isinstance(mask.get("sets"), dict):
        known = ["unmasked", *mask["sets"]]
        for c in params.get("evaluate", {}).get("conditions", []):
            for role in ("train", "test"):
                if isinstance(c, dict) and c.get(role) not in known:
                    problems.append(
                        f"  - evaluate.conditions: {c.get('name')!r} {role}s on {c.get(role)!r}, "
                        f"which is not a data set ({', '.join(known)}: mask.sets names the masked)"
                    )
    fr = params.get("split", {}).get("fractions")
    if isinstance(fr, list) and len(fr) == 3 and all(isinstance(f, int | float) for f in fr):
        if abs(sum(fr) - 1) > 1e-6:
            problems.append(f"  - split.fractions: must sum to 1, got {sum(fr):g}")
    if problems:
        raise ParamsError("params.yaml is not valid:\n" + "\n".join(problems))
    return params


def load(path: str | Path = "params.yaml", schema_path: str | Path = SCHEMA) -> dict[str, Any]:
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(params).__name__}")
    return validate(params, schema_path)
