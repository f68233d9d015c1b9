"""A single-node SLURM cluster on this machine, for the live SLURM test.

Needs Debian's `slurm-wlm` and `munge` (.ci/run installs them with apt-get) and root (slurmd
starts jobs as their user). Everything it writes (slurm.conf, munge key and socket, state, spool,
logs, pid files) lies in one temporary folder; the daemons are stopped at the end.

Clients find the config through SLURM_CONF, except one: inside a job, Snakemake's jobstep plugin
(snakemake-executor-plugin-slurm-jobstep 0.6.1) drops every SLURM_* variable but the job's
identity before it calls `srun`, SLURM_CONF included, so `srun` reads the default path, as on a
real cluster. The cluster therefore also links /etc/slurm/slurm.conf to its config while it runs,
on a machine that has none (a machine with its own SLURM config is left alone: no test cluster).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")


def _ours(conf: Path) -> bool:
    """A link left by an earlier test cluster (to a slurm.conf in a temporary folder)."""
    return conf.is_symlink() and os.readlink(conf).startswith(tempfile.gettempdir())


def missing() -> str | None:
    """Why no cluster can be started here (None: it can). Each reason starts with ``no SLURM
    cluster here``, the words conftest.ALLOWED_SKIPS lets skip under .ci/run."""
    absent = [
        d for d in DAEMONS if not shutil.which(d, path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    ]
    if absent:
        return (
            f"no SLURM cluster here: SLURM not installed ({', '.join(absent)} not found): "
            ".ci/run installs Debian's slurm-wlm and munge with apt-get; that failed or was not run"
        )
    if os.geteuid() != 0:
        return (
            "no SLURM cluster here: slurmd must run as root to start jobs; these tests are not root"
        )
    if DEFAULT_CONF.exists() and not _ours(DEFAULT_CONF):
        return f"no SLURM cluster here: {DEFAULT_CONF} exists, this machine has a SLURM of its own"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mem_mb(margin_mb: int = 2048) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(1024, int(line.split()[1]) // 1024 - margin_mb)
    raise RuntimeError("no MemTotal in /proc/meminfo")


def slurm_conf(tmp: Path, host: str, cpus: int = 2) -> str:
    return f"""\
ClusterName=maskprivacy-ci
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={tmp}/munge.sock
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/slurmctld.log
SlurmdLogFile={tmp}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName={host} CPUs={cpus} RealMemory={mem_mb()} State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """munged, slurmctld and slurmd, configured in ``tmp``; ``env`` points clients at it."""

    def __init__(self, tmp: Path, cpus: int = 2):
        self.tmp = tmp
        self.host = socket.gethostname().split(".")[0]
        for d in ("state", "spool"):
            (tmp / d).mkdir(parents=True, exist_ok=True)
        self.conf = tmp / "slurm.conf"
        self.conf.write_text(slurm_conf(tmp, self.host, cpus))
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.env["PATH"] = f"{self.env.get('PATH', '')}:/usr/sbin"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)

    def start(self, timeout: float = 90) -> None:
        if DEFAULT_CONF.is_symlink() or not DEFAULT_CONF.exists():
            DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
            DEFAULT_CONF.unlink(missing_ok=True)
            DEFAULT_CONF.symlink_to(self.conf)
        key = self.tmp / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munged = self._run(
            "munged", "--force", f"--key-file={key}", f"--socket={self.tmp}/munge.sock",
            f"--pid-file={self.tmp}/munged.pid", f"--log-file={self.tmp}/munged.log",
            f"--seed-file={self.tmp}/munged.seed",
        )  # fmt: skip
        if munged.returncode:
            raise RuntimeError(f"munged did not start: {munged.stderr}")
        for daemon in ("slurmctld", "slurmd"):
            res = self._run(daemon, "-f", str(self.conf))
            if res.returncode:
                raise RuntimeError(f"{daemon} did not start: {res.stderr}\n{self.logs()}")
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self._run("sinfo", "-h", "-N", "-o", "%T").stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node never became idle (sinfo: {state!r})\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.tmp.glob("*.log"))
        )

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.tmp / f"{name}.pid"
            if not pid_file.exists():
                continue
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, ValueError, IndexError):
                pass
        if DEFAULT_CONF.is_symlink() and os.readlink(DEFAULT_CONF) == str(self.conf):
            DEFAULT_CONF.unlink()
