"""Generate dvc.yaml from the Snakefile, so the two can never describe different pipelines.

The Snakefile is the one description of the DAG. This module builds Snakemake's job DAG for the
default target (with ``params.yaml`` as config) and writes one DVC stage per rule: its inputs
become ``deps`` (plus the rule's script; the package modules it computes with are rule inputs,
see :mod:`maskprivacy_workflow.codedeps`), its outputs
``outs`` (metrics and plots where they are), the params the rule is passed (sections, or keys
of one such as ``evaluate.conditions``) become ``params``, and its command runs that rule alone
through Snakemake. A rule with wildcards becomes a ``foreach`` stage keyed by the wildcard values
joined by ``-`` (``align@0``, ``train@masked-0`` for dataset and seed): a ``foreach`` over a
dict, rather than DVC's ``matrix``, because an item carries the inputs that differ between jobs
in more than the wildcards (the model and image folders of ``evaluate@masked_to_unmasked-0``).

    python -m maskprivacy_workflow.dvcgen            # (re)write dvc.yaml
    python -m maskprivacy_workflow.dvcgen --check    # exit 1 if dvc.yaml is stale
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from maskprivacy_workflow import generated

HEADER = (
    "# GENERATED from the Snakefile by `python -m maskprivacy_workflow.dvcgen`: do not edit by hand.\n"
    "# `python -m maskprivacy_workflow.dvcgen --check` (run by the tests) fails when this file is stale.\n"
)
# Metrics live in git (cache: false, not git-ignored), so every commit and every `dvc exp run`
# holds them: `dvc metrics diff` and `dvc exp show` compare runs.
METRICS = {"results/metrics.json"}
REFERENCE_METRICS = "results/reference/*/metrics.json"
# Outputs shown by `dvc plots show/diff`: folders of PNG images (evaluation pictures; learning
# curves, comparison bars and group heat maps from compare). Images only, so DVC's HTML page has
# no vega scripts from a CDN and opens offline.
PLOTS = {"results/evaluate/{condition}/seed{seed}/plots", "results/compare/plots"}
SNAKEMAKE = "snakemake --cores all --quiet rules --force --allowed-rules {rule} -- {targets}"


@contextlib.contextmanager
def workflow_dag(root: Path) -> Iterator[Any]:
    """Snakemake's workflow for ``root``'s Snakefile with its job DAG built (all jobs forced)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import DAGSettings, OutputSettings, ResourceSettings

    with (
        contextlib.redirect_stdout(io.StringIO()),
        SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api,
    ):
        wapi = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            snakefile=root / "Snakefile",
            workdir=root,
        )
        wapi.dag(DAGSettings(forceall=True))
        wf = wapi._workflow  # the public API has no job listing (Snakemake is pinned)
        wf._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        wf._build_dag()
        yield wf


def config_paths(value: Any, config: dict[str, Any], rule: str = "") -> list[str]:
    """Where in the config a rule's param comes from, as DVC names params: a section
    (``align``), several sections when the param is a selection of them (compare's ``all``:
    every section but ``compute``), several keys of one mapping inside a section (the mask
    rule's ``mask.seed``, ... and its set's ``mask.sets.<set>``, even when that set is the only
    one), or a key of a section (``evaluate.conditions``); [] if none, or if the keys of the
    selection are in more than one mapping and none of them is the ``rule``'s own section
    (evaluate's ``bootstrap`` and ``seed`` are also compare's: evaluate's are meant, also for
    the external sets' ``*_external`` stages)."""
    for sec, cfg in config.items():
        if isinstance(value, dict | list) and value == cfg:
            return [sec]
    if isinstance(value, dict) and len(value) > 1:
        if all(k in config and v == config[k] for k, v in value.items()):
            return sorted(value)
    if isinstance(value, dict) and value:
        found = [
            [f"{where}.{k}" for k in sorted(value)]
            for where, node in _mappings(config)
            if all(k in node and node[k] == v for k, v in value.items())
        ]
        if len(found) > 1 and rule:
            # the rule's own section (align_external's is align's; an external set's stage takes
            # evaluate's, as evaluate.external configures the sets: recognize_external's)
            own = {rule, rule.split("_")[0], *(["evaluate"] if rule.endswith("_external") else [])}
            found = [f for f in found if f[0].split(".")[0] in own]
        if len(found) == 1:
            return found[0]
    for sec, cfg in config.items():
        if isinstance(cfg, dict):
            for key, v in cfg.items():
                if isinstance(value, dict | list) and value and value == v:
                    return [f"{sec}.{key}"]
    return []


def _mappings(node: dict[str, Any], where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every mapping inside the config (not the config itself), with its DVC name."""
    for key, v in node.items():
        if isinstance(v, dict):
            name = f"{where}.{key}" if where else str(key)
            yield name, v
            yield from _mappings(v, name)


def _item_params(params: list[str], job: dict[str, Any]) -> list[str]:
    """A job's params as its foreach stage lists them: a key named by a wildcard's value (the
    mask rule's ``mask.sets.paper``, for the job of set ``paper``) becomes ``${item.<name>}``."""
    by_value = {v: k for k, v in job["wildcards"].items()}
    out = []
    for p in params:
        head, _, last = p.rpartition(".")
        out.append(f"{head}.${{item.{by_value[last]}}}" if head and last in by_value else p)
    return out


def snakemake_jobs(root: Path) -> list[dict[str, Any]]:
    """The jobs of the Snakemake DAG for the default target, forced, as plain dicts."""
    with workflow_dag(root) as wf:
        config = wf.config
        jobs = []
        for job in wf.dag.jobs:
            rule = job.rule
            params = {p for v in job.params for p in config_paths(v, config, rule.name)}
            # a key of a section listed whole is tracked already (compare: all, and seeds)
            params = sorted(
                p for p in params if p.split(".")[0] == p or p.split(".")[0] not in params
            )
            jobs.append(
                {
                    "rule": rule.name,
                    "wildcards": dict(job.wildcards_dict),
                    "input": [str(f) for f in job.input],
                    "input_names": _input_names(job),
                    "output": [str(f) for f in job.output],
                    "input_patterns": [str(f) for f in rule.input if isinstance(f, str)],
                    "output_patterns": [str(f) for f in rule.output],
                    "script": rule.script,
                    "params": params,
                    "is_target": rule.name == wf.default_target,
                }
            )
    return jobs


def _input_names(job: Any) -> list[str]:
    """A name for each input position (the rule's keyword, or ``input<i>``)."""
    names = [f"input{i}" for i in range(len(job.input))]
    for name, (start, end) in job.input._names.items():
        for i in range(start, end if end is not None else start + 1):
            names[i] = name if (end is None or end - start == 1) else f"{name}{i - start}"
    return names


def _template(path: str, job: dict[str, Any]) -> str:
    """Turn a concrete path of ``job`` back into a DVC foreach template (``${item.name}``): the
    rule's own pattern that gives it (``results/train/{dataset}/seed{seed}/model.pt``), so any
    number of wildcards, and values that occur elsewhere in the path, are placed right. A path
    no string pattern gives (an input from a function) stays as it is."""
    pattern = _pattern_for(path, job)
    return path if pattern == path else re.sub(r"\{(\w+)\}", r"${item.\1}", pattern)


def build(root: Path) -> dict[str, Any]:
    jobs = [j for j in snakemake_jobs(root) if not j["is_target"]]
    by_rule: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for j in jobs:
        by_rule[j["rule"]].append(j)
    order = _topological(jobs)
    stages: dict[str, Any] = {}
    for rule in order:
        group = sorted(by_rule[rule], key=lambda j: sorted(j["wildcards"].items()))
        first = group[0]
        wild = first["wildcards"]
        tpl = functools.partial(_template, job=first)
        # An input that differs between jobs in more than the wildcard becomes an item field.
        item_fields: dict[str, list[str]] = {}
        dep_set = set()
        for i in range(len(first["input"])):
            values = [_template(j["input"][i], j) for j in group]
            if len(set(values)) == 1:
                dep_set.add(values[0])
            else:
                key = first["input_names"][i]
                item_fields[key] = [j["input"][i] for j in group]
                dep_set.add("${item." + key + "}")
        deps = sorted(dep_set)
        if first["script"]:
            script = (root / "workflow" / "rules" / first["script"]).resolve()
            deps.append(str(script.relative_to(root)))
        outs: list[Any] = []
        metrics: list[Any] = []
        plots: list[Any] = []
        for p in first["output"]:
            t = tpl(p)
            pattern = _pattern_for(p, first)
            if p in METRICS:
                metrics.append({p: {"cache": False}})
            elif pattern in PLOTS:
                plots.append({t: {"cache": True}})
            else:
                outs.append(t)
        targets = " ".join(tpl(p) for p in first["output"])
        stage: dict[str, Any] = {
            "cmd": SNAKEMAKE.format(rule=rule, targets=targets),
            "deps": deps,
        }
        params = _item_params(first["params"], first)
        if any(_item_params(j["params"], j) != params for j in group):
            raise RuntimeError(f"dvcgen: the jobs of rule {rule} are passed different params")
        if params:
            stage["params"] = params
        if outs:
            stage["outs"] = outs
        if metrics:
            stage["metrics"] = metrics
        if plots:
            stage["plots"] = plots
        if wild:
            # keyed by the wildcard values, so DVC names the stages train@masked, ...
            items = {
                "-".join(v for _, v in sorted(j["wildcards"].items())): {
                    **dict(sorted(j["wildcards"].items())),
                    **{k: v[n] for k, v in item_fields.items()},
                }
                for n, j in enumerate(group)
            }
            stages[rule] = {"foreach": items, "do": stage}
        else:
            stages[rule] = stage
    out: dict[str, Any] = {"stages": stages}
    # the published runs' metrics (python -m maskprivacy_workflow.published): DVC shows them beside
    # the run's own results/metrics.json in `dvc metrics show/diff` and `dvc exp show`
    published = sorted(p.relative_to(root).as_posix() for p in root.glob(REFERENCE_METRICS))
    if published:
        out["metrics"] = published
    return out


def _pattern_for(path: str, job: dict[str, Any]) -> str:
    """The rule's input or output pattern that gives ``path`` for this job, else ``path``."""
    for raw in (*job["output_patterns"], *job["input_patterns"]):
        pat = re.sub(r"\{(\w+),[^}]*\}", r"{\1}", raw)  # drop wildcard constraints
        try:
            if pat.format(**job["wildcards"]) == path:
                return pat
        except (KeyError, IndexError, ValueError):  # a pattern of other wildcards
            continue
    return path


def _topological(jobs: list[dict[str, Any]]) -> list[str]:
    """Rule names in dependency order (ties broken by name, so the output is stable)."""
    producer = {o: j["rule"] for j in jobs for o in j["output"]}
    deps: dict[str, set[str]] = defaultdict(set)
    for j in jobs:
        deps[j["rule"]] |= {
            producer[i] for i in j["input"] if i in producer and producer[i] != j["rule"]
        }
    order: list[str] = []
    pending = sorted({j["rule"] for j in jobs})
    while pending:
        ready = [r for r in pending if deps[r] <= set(order)]
        if not ready:
            raise RuntimeError(f"cycle among rules {pending}")
        order.append(ready[0])
        pending.remove(ready[0])
    return order


def render(root: Path) -> str:
    return HEADER + yaml.safe_dump(build(root), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    return generated.main(
        argv,
        doc=__doc__,
        module="maskprivacy_workflow.dvcgen",
        target="dvc.yaml",
        render=render,
        stale="it no longer matches the Snakefile and params.yaml",
        fresh="the Snakefile",
    )


if __name__ == "__main__":
    sys.exit(main())
