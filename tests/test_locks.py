"""A lock left by a killed Snakemake run is removed; one held by a live run is kept."""

from __future__ import annotations

import io
import subprocess
import time

from maskprivacy_workflow.locks import clear_stale_locks, snakemake_processes


def test_stale_lock_removed_only_when_no_snakemake_works_in_the_folder(tmp_path):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("data/x\n")
    (locks / "0.output.lock").write_text("results/y\n")
    # a process called snakemake working in the folder (as `exec -a` names it)
    live = subprocess.Popen(["bash", "-c", "exec -a snakemake sleep 60"], cwd=tmp_path)
    try:
        for _ in range(100):
            if snakemake_processes(tmp_path):
                break
            time.sleep(0.05)
        assert snakemake_processes(tmp_path) == [live.pid]
        assert not clear_stale_locks(tmp_path, log=io.StringIO())
        assert len(list(locks.glob("*.lock"))) == 2
        elsewhere = tmp_path / "other"
        elsewhere.mkdir()
        assert snakemake_processes(elsewhere) == []  # it works in another folder
    finally:
        live.kill()
        live.wait()
    log = io.StringIO()
    assert clear_stale_locks(tmp_path, log=log)
    assert not list(locks.glob("*.lock"))
    assert "removed the lock a killed Snakemake run left" in log.getvalue()
    assert not clear_stale_locks(tmp_path, log=log)  # nothing left to remove
