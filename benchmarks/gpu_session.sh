#!/usr/bin/env bash
# One lent-GPU session in two calls (the UTKFace archive is over the 64 MiB a call may carry):
#   part1: carries .gpu/a (first half of the archive + landmark cache); runs the training
#          throughput benchmark (ceiling vs pipeline loop, eager and compiled) on real images.
#   part2: carries .gpu/b (second half); runs the whole pipeline on UTKFace through
#          benchmarks/utkface_gpu.py with the epochs that fit the call's time limit.
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
  python3 benchmarks/train_throughput.py --compile both --steps 40 --warmup 8 \
    --images $W/half/UTKFace --n-images 8192 --json $W/bench.json 2>&1 | grep -v Warning
  cp $W/bench.json $OUT/
  ;;
part2)
  cat $W/UTKFace.tar.gz.part-00 .gpu/b/UTKFace.tar.gz.part-01 > $W/UTKFace.tar.gz
  sha256sum $W/UTKFace.tar.gz
  read EPOCHS COMPILE < <(python3 - <<'PY'
import json
try:
    rows = {r["compile"]: r for r in json.load(open("/tmp/gpu/bench.json"))["rows"]}
except Exception:
    rows = {}
r = rows.get(True) or rows.get(False) or {"pipeline_img_s": 2000, "first_step_s": 5}
per_epoch = 18300 / r["pipeline_img_s"] + 0.5           # train part + validation
budget = 600 - 90 - 2 * (r["first_step_s"] + 10) - 60     # prep+eval, compile+decode, margin
print(max(1, min(30, int(budget / (2 * per_epoch)))), "true" if True in rows else "false")
PY
)
  echo "epochs that fit: $EPOCHS, compile: $COMPILE"
  trap 'tar -czf $OUT/results.tar.gz -C $W/run results reports timings.json data/download/report.json data/download/rejects.csv data/align/rejects.csv data/mask/rejects.csv data/mask/masks.csv data/split/split.csv --exclude="*.pt" 2>/dev/null; cp $W/run/results/metrics.json $OUT/ 2>/dev/null' EXIT
  python3 benchmarks/utkface_gpu.py $W/UTKFace.tar.gz $W/landmarks.npz --workdir $W/run \
    --params presets/utkface.yaml --threads 16 --set train.epochs=$EPOCHS --set train.compile=$COMPILE 2>&1 | grep -v Warning
  nvidia-smi --query-gpu=memory.used --format=csv
  ;;
esac
