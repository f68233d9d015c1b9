# maskprivacy: does a face mask protect sex, race and age from a deep network?
#
# download -> align (one job per shard), mask (one per mask set and shard; identity too when
#   split.group_by: identity)
#   -> split -> train (one model per training set and seed) -> evaluate (one job per condition
#   and seed) -> compare (paired statistics over faces and seeds, the seed ensemble, metrics, report)
# the recognizer attacker (recognize.enabled): identity (unmasked) and describe (one per mask set
#   and shard): dlib's face descriptors -> recognize (heads per training set and seed, every
#   condition) -> compare (both attackers in one report); with external test sets, describe_external
#   (per set, version and shard) -> recognize_external (recognize's fitted heads, per set)
# the attacker ladder (ladder.rungs): train_ladder and evaluate_ladder (each rung's models, one
#   seed) -> ladder (the mask's cost against the attacker's strength, the trend, the figure)
#
# The one description of the DAG: dvc.yaml is generated from it
# (`python -m maskprivacy_workflow.dvcgen`, checked by `python -m maskprivacy_workflow.dvcgen --check`).
import os
import re
import sys
from pathlib import Path


from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


# `snakemake --report report.html` after a run: the answer, its tables and the plots, captioned
report: "workflow/report/workflow.rst"


# The package in src/ serves every script, also in per-rule conda envs and on cluster nodes.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)
)

from maskprivacy.core.params import validate

validate(config, Path(workflow.basedir) / "workflow/schemas/params.schema.yaml")

if workflow.is_main_process:
    # a lock left by a killed run (kill -9) would stop this one: remove it when no other
    # snakemake works here (with rerun-incomplete, the plain command then finishes the run)
    from maskprivacy_workflow.locks import clear_stale_locks

    clear_stale_locks(os.getcwd())

from maskprivacy.masks.sets import used_sets

CONDITION = {c["name"]: c for c in config["evaluate"]["conditions"]}
CONDITIONS = list(CONDITION)
DATASETS = sorted(
    {c[k] for c in config["evaluate"]["conditions"] for k in ("train", "test")}
)
# the masked data sets (mask.sets) the conditions train or test on: one mask job per set and
# shard, each from the same aligned faces and landmarks (a set no condition names is not drawn)
MASK_SETS = list(used_sets(config["mask"]["sets"], config["evaluate"]["conditions"]))
TRAIN_SETS = sorted({c["train"] for c in config["evaluate"]["conditions"]})
# align and mask run once per shard (align.shards), in parallel where cores or a cluster allow
SHARDS = [str(i) for i in range(config["align"].get("shards", 1))]
# one model per training set and seed (train.seeds): its own init, augmentation and data order
SEEDS = [str(s) for s in config["train"]["seeds"]]
# the second attacker, an off-the-shelf face recognizer (docs/recognizer.md); on by default
RECOGNIZE = bool(config.get("recognize", {}).get("enabled", True))
# the attacker ladder (ladder.rungs: off unless a preset adds rungs, presets/ladder.yaml): each
# rung's models on train.seeds' first seed, the mask's cost against compare.baseline
from maskprivacy.analysis.ladder import resolve_rungs

LADDER = resolve_rungs(config["train"], config.get("ladder"))
LADDER_SEED = SEEDS[0]
LADDER_CONDITION = config.get("ladder", {}).get("condition", "masked")
LADDER_CONDITIONS = [config["compare"]["baseline"], LADDER_CONDITION]


wildcard_constraints:
    dataset="|".join(DATASETS),
    maskset="|".join(MASK_SETS),
    condition="|".join(CONDITIONS),
    shard=r"\d+",
    seed=r"\d+",
    rung="|".join(map(re.escape, LADDER)) or "(?!)",


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/mask.smk"
include: "workflow/rules/identity.smk"
include: "workflow/rules/describe.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/recognize.smk"
include: "workflow/rules/external.smk"
include: "workflow/rules/evaluate_external.smk"
include: "workflow/rules/recognize_external.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/ladder.smk"


rule all:
    default_target: True
    input:
        "results/metrics.json",
        "results/report.html",
        # ladder.rungs: the attacker ladder's statistics and figure
        *(["results/ladder/ladder.json"] if LADDER else []),
