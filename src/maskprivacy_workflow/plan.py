"""The Snakemake DAG as a plan of jobs, and a runner for machines without Snakemake.

The lent GPU machine has PyTorch and this package but neither Snakemake nor dlib. Rather than a
second description of the pipeline (which drifts), ``export`` asks Snakemake, where it is
installed, for the jobs of the DAG with everything a rule's script reads (named inputs, outputs,
logs, params, wildcards, threads) and writes them to a JSON plan in dependency order. ``run``
executes the rules' own ``workflow/scripts`` with a stand-in for the ``snakemake`` object, so the
same scripts run with the same paths and params, one job at a time or (``--jobs``) side by side
once their inputs are made. What else Snakemake does (skipping
up-to-date jobs, conda envs, clusters) is not there: a plan reruns every job.

    python -m maskprivacy_workflow.plan export --configfile presets/utkface.yaml --cores 16 -o plan.json
    python -m maskprivacy_workflow.plan run plan.json --jobs 16 --set train.epochs=12  # no Snakemake
    python -m maskprivacy_workflow.plan run plan.json --dry-run                 # list the jobs
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import runpy
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml

PLAN_VERSION = 1


@contextlib.contextmanager
def workflow_dag(root: Path, cores: int = 1, configfiles: tuple[Path, ...] = ()) -> Iterator[Any]:
    """Snakemake's workflow for ``root``'s Snakefile with its job DAG built (all jobs forced)."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.enums import Quietness
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        ResourceSettings,
    )

    with (
        contextlib.redirect_stdout(io.StringIO()),
        SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api,
    ):
        wapi = api.workflow(
            resource_settings=ResourceSettings(cores=cores),
            config_settings=ConfigSettings(configfiles=[Path(f).resolve() for f in configfiles]),
            snakefile=root / "Snakefile",
            workdir=root,
        )
        wapi.dag(DAGSettings(forceall=True))
        wf = wapi._workflow  # the public API has no job listing
        wf._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
        wf._build_dag()
        yield wf


def _named(items: Any) -> dict[str, Any]:
    """A Snakemake ``Namedlist`` as plain data: its items and its names -> (start, end)."""
    return {
        "items": [
            v if v is None or isinstance(v, dict | list | int | float | bool | str) else str(v)
            for v in items
        ],
        "names": {k: [s, e] for k, (s, e) in items._names.items()},
    }


def config_path(value: Any, config: dict[str, Any]) -> list[str] | None:
    """Where in the config ``value`` comes from ([] = the whole config), or None."""
    if value == config:
        return []
    for sec, cfg in config.items():
        if isinstance(value, dict | list) and value == cfg:
            return [sec]
        if isinstance(cfg, dict):
            for key, v in cfg.items():
                if isinstance(value, dict | list) and value and value == v:
                    return [sec, key]
    return None


def export(root: Path, cores: int = 1, configfiles: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The plan of ``root``'s Snakefile: its config and every job (the target rule left out)
    in an order where each job comes after the jobs it needs."""
    root = Path(root).resolve()
    with workflow_dag(root, cores, configfiles) as wf:
        config = json.loads(json.dumps(wf.config))
        jobs = []
        for level in wf.dag.toposorted():
            for job in sorted(level, key=lambda j: (j.rule.name, str(j.output))):
                if job.rule.name == wf.default_target or not job.rule.script:
                    continue
                params = _named(job.params)
                params["from_config"] = [config_path(v, config) for v in params["items"]]
                script = Path(job.rule.script)
                if script.is_absolute():
                    script = script.relative_to(root)
                else:  # relative to the rules file that declares it
                    script = (Path(job.rule.snakefile).parent / script).resolve().relative_to(root)
                jobs.append(
                    {
                        "rule": job.rule.name,
                        "script": str(script),
                        "wildcards": dict(job.wildcards_dict),
                        "threads": int(job.threads),
                        "gpu": int(job.resources.get("gpu", 0) or 0),
                        "input": _named(job.input),
                        "output": _named(job.output),
                        "log": _named(job.log),
                        "params": params,
                    }
                )
        made = {f for j in jobs for f in j["output"]["items"]}
        stale = sorted(
            {
                (f, rule.name)
                for j in jobs
                for f in j["input"]["items"]
                if f not in made
                for rule in wf.rules
                if rule.name != wf.default_target and rule.is_producer(f)
            }
        )
    if stale:  # Snakemake could not make the job (an input of its own is missing) and took
        # the files a former run left as given; a plan must not depend on such leftovers
        raise ValueError(
            "plan: no job makes "
            + ", ".join(f"{f} (rule {r})" for f, r in stale)
            + ": an input of that rule is missing here (for download: download.path), so "
            "Snakemake takes an earlier run's outputs as given. Put every input in place "
            "(e.g. link the archive to download.path) and export again."
        )
    return {"version": PLAN_VERSION, "cores": cores, "config": config, "jobs": jobs}


class Named(list):
    """What a script sees as ``snakemake.input`` etc.: a list whose names are attributes."""

    def __init__(self, items: list[Any], names: dict[str, list[int | None]]):
        super().__init__(items)
        for name, (start, end) in names.items():
            setattr(self, name, self[start] if end is None else Named(self[start:end], {}))


def _set_path(obj: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        obj = obj.setdefault(key, {})
    obj[path[-1]] = value


def _get_path(obj: Any, path: list[str]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def apply_overrides(
    plan: dict[str, Any], overrides: list[str], root: Path = Path(".")
) -> dict[str, Any]:
    """A copy of ``plan`` with ``section.key=value`` settings (YAML values) applied to its
    config and to every job param taken from the config; the config is validated again
    against ``root``'s schema."""
    plan = copy.deepcopy(plan)
    for item in overrides:
        key, sep, text = item.partition("=")
        path = [p for p in key.strip().split(".") if p]
        if not sep or len(path) < 2:
            raise ValueError(f"--set {item!r}: expected section.key=value, e.g. train.epochs=12")
        value = yaml.safe_load(text)
        if path[0] not in plan["config"]:
            raise ValueError(f"--set {item!r}: no section {path[0]!r} in the plan's config")
        _set_path(plan["config"], path, value)
        for job in plan["jobs"]:
            p = job["params"]
            for i, src in enumerate(p["from_config"]):
                if src is None:
                    continue
                if path[: len(src)] == src:  # the setting is inside this param
                    if len(path) == len(src):
                        p["items"][i] = value
                    else:
                        _set_path(p["items"][i], path[len(src) :], value)
                elif src[: len(path)] == path:  # this param is inside the setting
                    p["items"][i] = copy.deepcopy(_get_path(value, src[len(path) :]))
    if overrides:
        try:
            from maskprivacy.core.params import SCHEMA, validate
        except ImportError as exc:  # a bare machine may lack jsonschema: say so, go on
            print(f"plan: the settings are not checked against the schema ({exc})", flush=True)
        else:
            validate(plan["config"], Path(root) / SCHEMA)
    return plan


def _job_label(job: dict[str, Any]) -> str:
    wc = ",".join(f"{k}={v}" for k, v in job["wildcards"].items())
    return f"{job['rule']}[{wc}]" if wc else job["rule"]


def _shim(plan: dict[str, Any], job: dict[str, Any]) -> SimpleNamespace:
    """The ``snakemake`` object a rule's script reads, for one job of the plan."""
    wildcards = job["wildcards"]
    return SimpleNamespace(
        input=Named(job["input"]["items"], job["input"]["names"]),
        output=Named(job["output"]["items"], job["output"]["names"]),
        log=Named(job["log"]["items"], job["log"]["names"]),
        params=Named(job["params"]["items"], job["params"]["names"]),
        wildcards=Named(list(wildcards.values()), {n: [i, None] for i, n in enumerate(wildcards)}),
        threads=job["threads"],
        config=plan["config"],
        rule=job["rule"],
    )


def _run_job(plan: dict[str, Any], job: dict[str, Any]) -> None:
    for f in job["output"]["items"] + job["log"]["items"]:
        Path(f).parent.mkdir(parents=True, exist_ok=True)
    runpy.run_path(job["script"], init_globals={"snakemake": _shim(plan, job)}, run_name="__main__")


def _child(plan: dict[str, Any], job: dict[str, Any]) -> None:  # in a forked process
    code = 0
    try:
        _run_job(plan, job)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(
    plan: dict[str, Any],
    root: Path = Path("."),
    dry_run: bool = False,
    jobs: int = 1,
    cores: int | None = None,
    gpus: int = 1,
) -> dict[str, float]:
    """Run every job of ``plan`` from ``root`` (its paths are relative to it) with each rule's
    script; returns wall seconds per job. A failing job stops the run, naming the job.

    ``jobs`` > 1 runs jobs whose inputs are ready side by side in forked processes, as long as
    their threads fit in ``cores`` (default: the plan's) and their ``gpu`` resources in ``gpus``
    (so the GPU rules run one after another on one GPU, as Snakemake's default profile does).
    """
    if plan.get("version") != PLAN_VERSION:
        raise ValueError(f"plan version {plan.get('version')!r}, this runner reads {PLAN_VERSION}")
    root = Path(root).resolve()
    todo = list(plan["jobs"])
    n = len(todo)
    seconds: dict[str, float] = {}
    here = Path.cwd()
    os.chdir(root)
    try:
        if dry_run or jobs <= 1:
            for k, job in enumerate(todo, 1):
                label = _job_label(job)
                print(f"[{k}/{n}] {label}: {job['script']}", flush=True)
                if dry_run:
                    continue
                t0 = time.perf_counter()
                try:
                    _run_job(plan, job)
                except BaseException as exc:
                    raise RuntimeError(
                        f"plan: job {label} ({job['script']}) failed: {exc}"
                    ) from exc
                seconds[label] = round(time.perf_counter() - t0, 2)
                print(f"    {label} done in {seconds[label]} s", flush=True)
        else:
            _run_parallel(plan, todo, seconds, jobs, cores or int(plan.get("cores", 1)), gpus)
    finally:
        os.chdir(here)
    return seconds


def _run_parallel(
    plan: dict[str, Any],
    todo: list[dict[str, Any]],
    seconds: dict[str, float],
    jobs: int,
    cores: int,
    gpus: int,
) -> None:
    import multiprocessing as mp
    from multiprocessing.connection import wait

    ctx = mp.get_context("fork")
    makers = {f: id(j) for j in todo for f in j["output"]["items"]}
    done: set[int] = set()
    running: dict[int, tuple[Any, dict[str, Any], float]] = {}
    n, started, failed = len(todo), 0, None
    while todo or running:
        used_threads = sum(min(j["threads"], cores) for _, j, _ in running.values())
        used_gpus = sum(j.get("gpu", 0) for _, j, _ in running.values())
        for job in list(todo):
            if failed or len(running) >= jobs:
                break
            needs = {makers[f] for f in job["input"]["items"] if f in makers}
            threads, gpu = min(job["threads"], cores), job.get("gpu", 0)
            fits = used_threads + threads <= cores or not running
            gpu_free = gpu == 0 or used_gpus + gpu <= max(gpus, 1)  # no GPU: one at a time too
            if needs <= done and fits and gpu_free:
                started += 1
                print(f"[{started}/{n}] {_job_label(job)}: {job['script']}", flush=True)
                proc = ctx.Process(target=_child, args=(plan, job))
                proc.start()
                running[proc.sentinel] = (proc, job, time.perf_counter())
                todo.remove(job)
                used_threads, used_gpus = used_threads + threads, used_gpus + gpu
        if not running:
            break
        for sentinel in wait(list(running)):
            proc, job, t0 = running.pop(sentinel)
            proc.join()
            label = _job_label(job)
            if proc.exitcode != 0:
                failed = (
                    failed or f"plan: job {label} ({job['script']}) failed (exit {proc.exitcode})"
                )
                continue
            done.add(id(job))
            seconds[label] = round(time.perf_counter() - t0, 2)
            print(f"    {label} done in {seconds[label]} s", flush=True)
        if failed and not running:
            break
    if failed:
        raise RuntimeError(failed)
    if todo:  # cannot happen with an exported plan: its jobs are in dependency order
        raise RuntimeError(f"plan: jobs never became ready: {[_job_label(j) for j in todo]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write the Snakefile's jobs as a plan (needs Snakemake)")
    ex.add_argument("--root", type=Path, default=Path("."), help="folder with the Snakefile")
    ex.add_argument("--configfile", type=Path, action="append", default=[])
    ex.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="threads cap per job")
    ex.add_argument("-o", "--out", type=Path, required=True)
    rn = sub.add_parser("run", help="run a plan's jobs in order (no Snakemake needed)")
    rn.add_argument("plan", type=Path)
    rn.add_argument("--root", type=Path, default=Path("."), help="folder the plan's paths are in")
    rn.add_argument("--set", action="append", default=[], help="override: train.epochs=12")
    rn.add_argument("--dry-run", action="store_true", help="list the jobs, run nothing")
    rn.add_argument("--jobs", type=int, default=1, help="jobs at once (forked processes)")
    rn.add_argument("--cores", type=int, default=None, help="threads cap (default: the plan's)")
    rn.add_argument("--gpus", type=int, default=1, help="GPUs: gpu=1 jobs at once")
    rn.add_argument("--timings", type=Path, default=None, help="write seconds per job (JSON)")
    args = ap.parse_args(argv)
    if args.cmd == "export":
        try:
            plan = export(args.root, args.cores, tuple(args.configfile))
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 2
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(plan, indent=1) + "\n")
        print(f"{len(plan['jobs'])} jobs -> {args.out}")
        return 0
    plan = apply_overrides(json.loads(args.plan.read_text()), args.set, args.root)
    seconds = run(plan, args.root, args.dry_run, args.jobs, args.cores, args.gpus)
    if args.timings:
        args.timings.write_text(json.dumps(seconds, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
