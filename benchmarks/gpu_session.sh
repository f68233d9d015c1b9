#!/usr/bin/env bash
# One lent-GPU session: the Snakefile run by Snakemake itself, installed offline from a wheelhouse.
# The node has PyTorch and this package's dependencies but no internet, no Snakemake and no dlib:
# Snakemake comes as wheels, and align takes each face's landmarks from a table made where dlib is
# (the align.landmarks option, see README). A call may carry 64 MiB, so what the node needs is
# prepared here in folders under .gpu/ (ignored by git), one folder per call:
#   mkdir -p .gpu/a .gpu/b .gpu/c
#   split -b 53000000 -d ../shared/data/UTKFace.tar.gz .gpu/a/UTKFace.tar.gz.part-
#   mv .gpu/a/UTKFace.tar.gz.part-01 .gpu/b/
#   python -m maskprivacy_workflow.wheelhouse .gpu/b/wheels --no-executors    # about 12 MB
#   cp <the align.landmarks table of the preset's images> .gpu/c/              # see README
# On the node:
#   carry      (once per folder, the folder carried): keeps what it carries in $W
#   bench      optional: the training throughput benchmark (compiled) on the first half's
#              images, which `run` then uses to size the epochs
#   run [EPOCHS [snakemake options...]]: (EXTRA=presets/ladder_gpu.yaml for the attacker ladder's
#              ResNet-50 rungs) joins the archive at the preset's download.path, installs
#              Snakemake from $W/wheels into a venv that sees the node's packages, and runs
#              `snakemake --scheduler greedy` (no ILP solver) on presets/utkface.yaml with
#              train.epochs = EPOCHS (given, or what fits the call's limit by bench) and
#              align.landmarks = $W/$LANDMARKS. Stopped after $LIMIT seconds (default 540), so
#              that what it made still comes back in $OUT.
# Rehearse on a CPU: W=/tmp/x OUT=/tmp/o LIMIT=3000 bash benchmarks/gpu_session.sh run 1 \
#   --config 'compute={device: cpu}'   (tests/test_gpu_session.py does it on a tiny preset, PRESET=...)
set -uo pipefail
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
W=${W:-/tmp/gpu} LIMIT=${LIMIT:-540} LANDMARKS=${LANDMARKS:-landmarks.csv}
PRESET=${PRESET:-presets/utkface.yaml}  # the study to run (tests/test_gpu_session.py: a tiny one)
# overlay presets layered on it, e.g. EXTRA=presets/ladder_gpu.yaml: the attacker ladder's
# ResNet-50 rungs at 112 and 224 px (docs/attacker-ladder.md)
EXTRA=${EXTRA:-}
mkdir -p "$W"
case "$1" in
carry)
  for d in .gpu/*/; do cp -r "$d"* "$W"/; done
  ls -la "$W"
  ;;
bench)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  mkdir -p "$W/half" && (tar -xzf "$W/UTKFace.tar.gz.part-00" -C "$W/half" 2>/dev/null || true)
  echo "images from the first half: $(ls "$W/half/UTKFace" | wc -l)"
  # compiled only, 20 steps: enough to size the epochs (a session's device time is 15 min)
  python3 benchmarks/train_throughput.py --compile on --steps 20 --warmup 5 \
    --images "$W/half/UTKFace" --n-images 8192 --json "$W/bench.json" 2>&1 | grep -v Warning
  cp "$W/bench.json" "$OUT/"
  ;;
run)
  for f in UTKFace.tar.gz.part-00 UTKFace.tar.gz.part-01 wheels/requirements.txt "$LANDMARKS"; do
    [ -e "$W/$f" ] || { echo "no $W/$f: carry every .gpu folder first (the machine may have been given back)"; exit 3; }
  done
  mkdir -p data && rm -f data/UTKFace.tar.gz && cat "$W"/UTKFace.tar.gz.part-0[01] > data/UTKFace.tar.gz
  sha256sum data/UTKFace.tar.gz
  if [ ! -x "$W/smk/bin/snakemake" ]; then
    python3 -m venv --system-site-packages "$W/smk"
    "$W/smk/bin/pip" install -q --no-index --find-links "$W/wheels" --no-deps -r "$W/wheels/requirements.txt"
  fi
  "$W/smk/bin/snakemake" --version
  EPOCHS=${2:-}
  shift $(( $# < 2 ? $# : 2 ))
  if [ -z "$EPOCHS" ]; then
    EPOCHS=$(W=$W LIMIT=$LIMIT PRESET=$PRESET EXTRA=$EXTRA python3 - <<'PY'
import json, os
import yaml
try:
    rows = {r["compile"]: r for r in json.load(open(os.environ["W"] + "/bench.json"))["rows"]}
except Exception:
    rows = {}
# without bench: the H200's compiled figures of 2026-11-26 (README)
r = rows.get(True) or rows.get(False) or {"pipeline_img_s": 6300, "first_step_s": 50}
per_epoch = 17600 / r["pipeline_img_s"] + 0.5  # 17,535 training images + validation
p = yaml.safe_load(open(os.environ["PRESET"]))
conditions, seeds = p["evaluate"]["conditions"], p["train"]["seeds"]
# one model per training set and seed, one evaluation per condition and seed
models = len({c["train"] for c in conditions}) * len(seeds)
evals = len(conditions) * len(seeds)
for extra in os.environ.get("EXTRA", "").split():
    # the ladder's rungs that train (a rung that changes no setting is the study's own model):
    # two models and two evaluations each
    rungs = ((yaml.safe_load(open(extra)) or {}).get("ladder") or {}).get("rungs") or {}
    own = {k: v for k, v in p["train"].items() if k != "seeds"}
    n = sum(1 for r in rungs.values() if {**own, **(r or {})} != own)
    models, evals = models + 2 * n, evals + 2 * n
# the data stages and compare take about 90 s, each evaluation about 12 s; each model's compile
# and image decoding about 15 s past its first step
budget = int(os.environ["LIMIT"]) - 90 - 12 * evals - models * (r["first_step_s"] + 15)
print(max(1, min(40, int(budget / (models * per_epoch)))))
PY
)
  fi
  echo "epochs: $EPOCHS"
  # the session's own settings, layered on the preset (Snakemake merges configfiles key by key)
  printf 'train: {epochs: %s}\nalign: {landmarks: %s}\n' "$EPOCHS" "$W/$LANDMARKS" > "$W/session.yaml"
  # two archives, each under the 16 MiB a returned file may have (the contact sheets take 11 MB)
  trap 'tar -czf $OUT/mask.tar.gz results/mask 2>/dev/null; tar -czf $OUT/results.tar.gz --exclude="*.pt" --exclude=results/mask results logs .snakemake/log data/download/report.json data/download/rejects.csv data/align/*/report.json data/align/*/rejects.csv data/mask/*/*/report.json data/mask/*/*/rejects.csv data/mask/*/*/masks.csv data/split 2>/dev/null; cp results/metrics.json $OUT/ 2>/dev/null' EXIT
  timeout "$LIMIT" "$W/smk/bin/snakemake" --cores all --scheduler greedy \
    --configfile "$PRESET" $EXTRA "$W/session.yaml" "$@" 2>&1 | tr '\r' '\n' \
    | grep -v -E 'Warning|\[[0-9:]+<[0-9:?]+|^\s*$' | tee "$OUT/run.log"
  rc=${PIPESTATUS[0]}  # Snakemake's (124: stopped at $LIMIT), not the filters'
  nvidia-smi --query-gpu=memory.used --format=csv 2>/dev/null || echo "no nvidia-smi (a CPU rehearsal)"
  exit "$rc"
  ;;
*)
  echo "usage: $0 carry | bench | run [EPOCHS [snakemake options...]]" >&2
  exit 2
  ;;
esac
