#!/usr/bin/env bash
# Train several runs side by side on one GPU within a wall-clock budget, then write slim fp16
# checkpoints (10 MB each) and one archive of logs to $OUT. Made for a lent machine with no
# network: data and wheels travel in .gpu/ (see scripts/pack_training_data.py).
# Options through the environment:
#   BUDGET (minutes, default 7.5)  DEVICE (cuda)  DATA (.gpu/train)  CROP (256)  BATCH (16)
#   STEPS (6000)  GAN_START (4200)  LR (4e-4)  EMA (0: off; e.g. 0.999)
#   ARCHS (sae-spn sae swwae): one run per architecture, named after it; or
#   RUNS: runs separated by ';', each 'NAME=ARCH [more compressnet-train options]', e.g.
#     RUNS='spn-colour=sae-spn --colour-layer; spn-plain=sae-spn'
#     (options given there win over the ones above).
# A run continues .gpu/resume/NAME.pt, else .gpu/resume/ARCH.pt, if there is one: slim
# checkpoints (export --slim); set STEPS/GAN_START beyond their step. The optimisers restart
# with a fresh warm-up.
set -u
OUT=${OUT:-out}
mkdir -p "$OUT" runs
if [ -d .gpu/whl ] && ! python3 -c "import constriction, pytorch_msssim" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
[ "$DEVICE" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
if [ -z "${RUNS:-}" ]; then
  RUNS=""
  for arch in ${ARCHS:-sae-spn sae swwae}; do RUNS="$RUNS${RUNS:+;}$arch=$arch"; done
fi
NAMES=()
IFS=';' read -ra ENTRIES <<< "$RUNS"
for entry in "${ENTRIES[@]}"; do
  entry=$(echo "$entry" | sed 's/^ *//')
  name=${entry%%=*}
  read -ra rest <<< "${entry#*=}"
  arch=${rest[0]}
  NAMES+=("$name")
  for resume in ".gpu/resume/$name.pt" ".gpu/resume/$arch.pt"; do
    if [ -f "$resume" ] && [ ! -f "runs/gpu-$name/ckpt.pt" ]; then
      mkdir -p "runs/gpu-$name" && cp "$resume" "runs/gpu-$name/ckpt.pt"
    fi
  done
  python3 -m compressnet.train "${DATA:-.gpu/train}" --out "runs/gpu-$name" --arch "$arch" \
    --device "$DEVICE" --crop "${CROP:-256}" --batch "${BATCH:-16}" --steps "${STEPS:-6000}" \
    --gan-start "${GAN_START:-4200}" --time-budget "${BUDGET:-7.5}" --lr "${LR:-4e-4}" \
    --ema "${EMA:-0}" --min-keep 3 --lam 200 --msssim-weight 10 \
    --val-every 1000 --ckpt-every 1000 --log-every 50 --threads 4 --no-progress "${rest[@]:1}" \
    > "runs/gpu-$name.out" 2>&1 &
done
wait
for name in "${NAMES[@]}"; do
  python3 -m compressnet.train.export "runs/gpu-$name/ckpt.pt" --slim "$OUT/$name.pt" &
  cp "runs/gpu-$name/log.jsonl" "runs/$name.log.jsonl"
  { echo "== $name"; tail -5 "runs/gpu-$name.out"; } | tee -a runs/train.out
  grep -E '"val"|planned' "runs/gpu-$name/log.jsonl" | tail -3
done
wait
tar -czf "$OUT/logs.tar.gz" -C runs train.out "${NAMES[@]/%/.log.jsonl}" \
  $(for n in "${NAMES[@]}"; do echo "gpu-$n.out"; done)
ls -la "$OUT"
