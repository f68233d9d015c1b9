"""dlib's CNN (MMOD) face detector, run in a helper process of its own.

dlib's CNN detector is not fork-safe: once a process has loaded it, a forked child that runs it
hangs (dlib's CPU thread pool is copied without its threads), and the stages fork their workers
(:func:`maskprivacy.core.pool.pool_map`, the benchmark's shard jobs). So no stage process loads
it: each process that needs it (keyed by pid, so a forked worker starts its own) starts
``python -m maskprivacy.faces.cnn`` once, a fresh interpreter that loads the model and answers
requests on its stdin/stdout (an image and an upsample level in, the boxes with their
confidence out). The exchange costs well under a millisecond against the detector's ~0.3 s per
200 px image. The helper ends when its parent closes the pipe (or exits).

No image stops a stage: an error dlib raises on one image (an image smaller than the network's
filters: "Filter windows must be small enough to fit into the padded image") comes back as
:class:`DetectorError` and the helper goes on; a helper that dies on an image (killed, out of
memory, a crash in dlib) is reaped and :class:`DetectorError` raised, and the next request starts
a fresh one. The caller rejects that image with the error as its detail.
"""

from __future__ import annotations

import atexit
import os
import pickle
import struct
import subprocess
import sys
import time
from typing import Any, BinaryIO

import numpy as np

CNN_NAME = "mmod_human_face_detector.dat"

_helper: dict[int, subprocess.Popen] = {}  # pid of the process using it -> its helper


class DetectorError(RuntimeError):
    """The CNN detector failed on one image: dlib raised (``died`` False: the helper goes on),
    or its helper process died on it (``died`` True)."""

    def __init__(self, message: str, died: bool = False):
        super().__init__(message)
        self.died = died


def _send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError("the CNN detector's helper process closed its pipe")
    (n,) = struct.unpack("<Q", head)
    return pickle.loads(stream.read(n))


def _start() -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskprivacy.faces.cnn"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    reply = _receive(proc.stdout)
    if isinstance(reply, str):  # the helper could not load the model: its message
        proc.wait()
        raise FileNotFoundError(reply)
    atexit.register(_stop, os.getpid())
    return proc


def _stop(pid: int) -> None:
    if pid != os.getpid():  # a forked child's copy of its parent's handler
        return
    proc = _helper.pop(pid, None)
    if proc is not None and proc.poll() is None:
        proc.stdin.close()
        proc.wait(timeout=10)


def start() -> None:
    """Start this process's helper (loads the model) if it has none yet."""
    pid = os.getpid()
    proc = _helper.get(pid)
    if proc is None or proc.poll() is not None:
        _helper[pid] = _start()


def _reap(pid: int) -> str:
    """Forget ``pid``'s helper, which died or broke its pipe; its exit status, in words."""
    proc = _helper.pop(pid, None)
    if proc is None:
        return "no helper"
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass
    try:
        code = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    return f"exit status {code}" if code >= 0 else f"killed by signal {-code}"


def detect(rgb: np.ndarray, upsample: int = 0) -> list[tuple[int, int, int, int, float]]:
    """Faces in ``rgb`` (``(H, W, 3)`` uint8) by the CNN detector at ``upsample``: boxes
    ``(left, top, right, bottom, confidence)``, inclusive pixel corners as dlib gives them.

    Raises :class:`DetectorError` when dlib fails on this image (the helper goes on) or the
    helper dies on it (reaped; the next call starts a new one)."""
    start()
    pid = os.getpid()
    proc = _helper[pid]
    try:
        _send(proc.stdin, (np.ascontiguousarray(rgb, dtype=np.uint8), int(upsample)))
        reply = _receive(proc.stdout)
    except (EOFError, BrokenPipeError, OSError, pickle.UnpicklingError) as exc:
        status = _reap(pid)
        raise DetectorError(
            f"the CNN detector's helper process died on this image ({status}; "
            f"{type(exc).__name__}: {exc}); a new one serves the next image",
            died=True,
        ) from exc
    if isinstance(reply, str):  # dlib raised on this image: its message
        raise DetectorError(reply)
    return reply


def helper_cpu_seconds() -> float:
    """CPU seconds this process's helper has used so far (0 without one, or off Linux): what
    the CNN costs, which the caller's own CPU time does not include."""
    proc = _helper.get(os.getpid())
    if proc is None:
        return 0.0
    try:
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def cpu_seconds() -> float:
    """CPU seconds of this process and of its helper: the cost of the work on a shared machine,
    where wall time says how busy the other jobs were."""
    return time.process_time() + helper_cpu_seconds()


def main() -> int:
    """The helper: load the model, say ready, answer requests until the pipe closes."""
    from maskprivacy.faces.model_files import model_file

    out, inp = sys.stdout.buffer, sys.stdin.buffer
    try:
        import dlib

        net = dlib.cnn_face_detection_model_v1(str(model_file(CNN_NAME, "align.detector")))
    except (ImportError, FileNotFoundError, RuntimeError) as exc:
        _send(out, f"CNN face detector: {type(exc).__name__}: {exc}")
        return 1
    _send(out, b"ready")
    while True:
        try:
            rgb, up = _receive(inp)
        except EOFError:
            return 0
        try:
            dets = net(rgb, up)
        except RuntimeError as exc:  # this image (e.g. smaller than the filters): say so, go on
            lines = [
                line.strip()
                for line in str(exc).splitlines()
                if line.strip() and not line.startswith("Error detected")
            ]
            _send(out, "dlib's CNN detector: " + (" ".join(lines) or type(exc).__name__))
            continue
        _send(
            out,
            [
                (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom(), float(d.confidence))
                for d in dets
            ],
        )


if __name__ == "__main__":
    raise SystemExit(main())
