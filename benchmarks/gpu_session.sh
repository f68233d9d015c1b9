#!/usr/bin/env bash
# One lent-GPU session in two calls (the UTKFace archive is over the 64 MiB a call may carry).
# Prepare here, where Snakemake and dlib are (.gpu/ is ignored by git):
#   mkdir -p .gpu/a .gpu/b
#   split -b 53000000 -d ../shared/data/UTKFace.tar.gz .gpu/a/UTKFace.tar.gz.part-
#   mv .gpu/a/UTKFace.tar.gz.part-01 .gpu/b/
#   python -m maskprivacy_workflow.plan export --configfile presets/utkface.yaml --cores 16 -o .gpu/a/plan.json
#   python benchmarks/landmarks_cache.py ../shared/data/UTKFace.tar.gz .gpu/a/landmarks.npz \
#       --params presets/utkface.yaml
#   part1 [bench]: carries .gpu/a (first half of the archive, plan, landmark cache) and keeps it
#          in $W; with `bench`, also runs the training throughput benchmark (compiled) on real
#          images, which part2 then uses to size the epochs.
#   part2 [EPOCHS [plan run options...]]: carries .gpu/b (second half); puts the archive at the
#          preset's download.path and runs the plan's jobs (the workflow's own scripts) through
#          benchmarks/utkface_gpu.py. EPOCHS: given, or what fits the call's time limit by part1's
#          benchmark. The run is stopped after $LIMIT seconds (default 540), so that what it made
#          still comes back in $OUT.
# Rehearse on a CPU: W=/tmp/x OUT=/tmp/o LIMIT=3000 bash benchmarks/gpu_session.sh part2 1 \
#   --set train.image_size=32 --jobs 2
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MPLBACKEND=Agg
W=${W:-/tmp/gpu} LIMIT=${LIMIT:-540}
mkdir -p $W
case "$1" in
part1)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  cp .gpu/a/* $W/
  mkdir -p $W/half && (tar -xzf $W/UTKFace.tar.gz.part-00 -C $W/half 2>/dev/null || true)
  echo "images from the first half: $(ls $W/half/UTKFace | wc -l)"
  # compiled only, 20 steps: enough to size part2's epochs (eager was measured on 2026-11-26, see
  # README); optional, since a session's device time is 15 min, the machine's start included
  if [ "${2:-}" = bench ]; then
    python3 benchmarks/train_throughput.py --compile on --steps 20 --warmup 5 \
      --images $W/half/UTKFace --n-images 8192 --json $W/bench.json 2>&1 | grep -v Warning
    cp $W/bench.json $OUT/
  fi
  ;;
part2)
  [ -f $W/UTKFace.tar.gz.part-00 ] || { echo "no $W/UTKFace.tar.gz.part-00: the machine was given back after part1; run part1 again"; exit 3; }
  mkdir -p data && rm -f data/UTKFace.tar.gz && cat $W/UTKFace.tar.gz.part-00 .gpu/b/UTKFace.tar.gz.part-01 > data/UTKFace.tar.gz
  sha256sum data/UTKFace.tar.gz
  EPOCHS=${2:-}
  shift $(( $# < 2 ? $# : 2 ))
  if [ -z "$EPOCHS" ]; then
    EPOCHS=$(W=$W LIMIT=$LIMIT python3 - <<'PY'
import json, os
try:
    rows = {r["compile"]: r for r in json.load(open(os.environ["W"] + "/bench.json"))["rows"]}
except Exception:
    rows = {}
# without part1's benchmark: the H200's compiled figures of 2026-11-26 (README)
r = rows.get(True) or rows.get(False) or {"pipeline_img_s": 6300, "first_step_s": 50}
per_epoch = 17600 / r["pipeline_img_s"] + 0.5  # 17,535 training images + validation
# one model per training set and seed (train.seeds), one evaluation per condition and seed
jobs = [j["rule"] for j in json.load(open(os.environ["W"] + "/plan.json"))["jobs"]]
models, evals = jobs.count("train"), jobs.count("evaluate")
# the data stages and compare take about 90 s, each evaluation about 12 s; each model's compile
# and image decoding about 15 s past its first step
budget = int(os.environ["LIMIT"]) - 90 - 12 * evals - models * (r["first_step_s"] + 15)
print(max(1, min(40, int(budget / (models * per_epoch)))))
PY
)
  fi
  echo "epochs: $EPOCHS"
  # two archives, each under the 16 MiB a returned file may have (the contact sheets take 11 MB)
  trap 'tar -czf $OUT/mask.tar.gz results/mask 2>/dev/null; tar -czf $OUT/results.tar.gz --exclude="*.pt" --exclude=results/mask results logs timings.json data/download/report.json data/download/rejects.csv data/align/*/report.json data/align/*/rejects.csv data/mask/*/report.json data/mask/*/rejects.csv data/mask/*/masks.csv data/split 2>/dev/null; cp results/metrics.json $OUT/ 2>/dev/null' EXIT
  timeout $LIMIT python3 benchmarks/utkface_gpu.py $W/plan.json $W/landmarks.npz \
    --timings timings.json --jobs 16 --set train.epochs=$EPOCHS "$@" 2>&1 | tr '\r' '\n' \
    | grep -v -E 'Warning|\[[0-9:]+<[0-9:?]+|^\s*$' | tee $OUT/part2.log
  nvidia-smi --query-gpu=memory.used --format=csv 2>/dev/null
  ;;
esac
