#!/usr/bin/env bash
# One lent-GPU session in two calls (the UTKFace archive is over the 64 MiB a call may carry).
# Prepare here, where Snakemake and dlib are (.gpu/ is ignored by git):
#   mkdir -p .gpu/a .gpu/b
#   split -b 53000000 -d ../shared/data/UTKFace.tar.gz .gpu/a/UTKFace.tar.gz.part-
#   mv .gpu/a/UTKFace.tar.gz.part-01 .gpu/b/
#   python -m maskprivacy.plan export --configfile presets/utkface.yaml --cores 16 -o .gpu/a/plan.json
#   python benchmarks/landmarks_cache.py ../shared/data/UTKFace.tar.gz .gpu/a/landmarks.npz \
#       --params presets/utkface.yaml
#   part1: carries .gpu/a (first half of the archive, plan, landmark cache); runs the training
#          throughput benchmark (ceiling vs pipeline loop, compiled) on real images.
#   part2: carries .gpu/b (second half); puts the archive at the preset's download.path and runs
#          the plan's jobs (the workflow's own scripts) through benchmarks/utkface_gpu.py, with
#          the epochs that fit the call's time limit.
# Everything it wants back goes under $OUT.
set -uo pipefail
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 MPLBACKEND=Agg
W=/tmp/gpu
mkdir -p $W
case "$1" in
part1)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  cp .gpu/a/* $W/
  mkdir -p $W/half && (tar -xzf $W/UTKFace.tar.gz.part-00 -C $W/half 2>/dev/null || true)
  echo "images from the first half: $(ls $W/half/UTKFace | wc -l)"
  # compiled only, 20 steps: enough to size the epochs of part2 (eager was measured on 2026-11-26,
  # see README); a session's device time is 15 min, machine start included
  python3 benchmarks/train_throughput.py --compile on --steps 20 --warmup 5 \
    --images $W/half/UTKFace --n-images 8192 --json $W/bench.json 2>&1 | grep -v Warning
  cp $W/bench.json $OUT/
  ;;
part2)
  mkdir -p data && cat $W/UTKFace.tar.gz.part-00 .gpu/b/UTKFace.tar.gz.part-01 > data/UTKFace.tar.gz
  sha256sum data/UTKFace.tar.gz
  read EPOCHS COMPILE < <(python3 - <<'PY'
import json
try:
    rows = {r["compile"]: r for r in json.load(open("/tmp/gpu/bench.json"))["rows"]}
except Exception:
    rows = {}
r = rows.get(True) or rows.get(False) or {"pipeline_img_s": 2000, "first_step_s": 5}
per_epoch = 18300 / r["pipeline_img_s"] + 0.5           # train part + validation
budget = 600 - 180 - 2 * (r["first_step_s"] + 10) - 60    # other jobs, compile+decode, margin
print(max(1, min(30, int(budget / (2 * per_epoch)))), "true" if True in rows else "false")
PY
)
  echo "epochs that fit: $EPOCHS, compile: $COMPILE"
  trap 'tar -czf $OUT/results.tar.gz --exclude="*.pt" results logs timings.json data/download/report.json data/download/rejects.csv data/align/*/report.json data/align/*/rejects.csv data/mask/*/report.json data/mask/*/rejects.csv data/mask/*/masks.csv data/split 2>/dev/null; cp results/metrics.json $OUT/ 2>/dev/null' EXIT
  python3 benchmarks/utkface_gpu.py $W/plan.json $W/landmarks.npz --timings timings.json --jobs 16 \
    --set train.epochs=$EPOCHS --set train.compile=$COMPILE 2>&1 | grep -v Warning
  nvidia-smi --query-gpu=memory.used --format=csv
  ;;
esac
