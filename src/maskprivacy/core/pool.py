"""A stage's per-file work in parallel: forked worker processes with a progress bar.

Result-neutral (``maskprivacy_workflow.codedeps.RESULT_NEUTRAL``): how the work is spread over
processes never changes a row, and the callers sort the rows by file, so editing this reruns
nothing.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from typing import Any

from tqdm import tqdm

from maskprivacy.core.plumbing import no_bar


def pool_map(
    work: Callable[[Any], dict[str, Any]],
    jobs: Sequence[Any],
    threads: int = 1,
    desc: str = "",
    progress: bool = True,
) -> list[dict[str, Any]]:
    """``work`` over ``jobs`` with a progress bar: in ``threads`` forked processes (so a model
    loaded before the call is shared), or in this one; the rows come back in any order (the
    callers sort them by file)."""
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(jobs), desc=desc, unit="img", disable=no_bar(progress))
    if threads > 1 and len(jobs) > 1:
        with mp.get_context("fork").Pool(threads) as pool:
            for row in pool.imap_unordered(work, jobs, chunksize=16):
                rows.append(row)
                bar.update()
    else:
        for job in jobs:
            rows.append(work(job))
            bar.update()
    bar.close()
    return rows
