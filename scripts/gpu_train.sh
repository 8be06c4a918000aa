#!/usr/bin/env bash
# Train the three lite models (sae-spn, sae, swwae) side by side on one GPU within a
# wall-clock budget, then write slim fp16 checkpoints and logs to $OUT (about 30 MB).
# Made for a lent machine with no network: data and wheels travel in .gpu/ (see
# scripts/pack_training_data.py). Options through the environment:
#   BUDGET (minutes, default 7.5)  DEVICE (cuda)  DATA (.gpu/train)  CROP (256)  BATCH (16)
#   STEPS (6000)  GAN_START (4200)  LR (4e-4)  EMA (0: off; e.g. 0.999)  ARCHS (sae-spn sae swwae)
# To continue earlier runs, put their slim checkpoints (export --slim) in .gpu/resume/ARCH.pt and
# set STEPS/GAN_START beyond their step: the optimisers restart with a fresh warm-up.
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
ARCHS=${ARCHS:-sae-spn sae swwae}
for arch in $ARCHS; do
  if [ -f ".gpu/resume/$arch.pt" ] && [ ! -f "runs/gpu-$arch/ckpt.pt" ]; then
    mkdir -p "runs/gpu-$arch" && cp ".gpu/resume/$arch.pt" "runs/gpu-$arch/ckpt.pt"
  fi
  python3 -m compressnet.train "${DATA:-.gpu/train}" --out "runs/gpu-$arch" --arch "$arch" \
    --device "$DEVICE" --crop "${CROP:-256}" --batch "${BATCH:-16}" --steps "${STEPS:-6000}" \
    --gan-start "${GAN_START:-4200}" --time-budget "${BUDGET:-7.5}" --lr "${LR:-4e-4}" \
    --ema "${EMA:-0}" --min-keep 3 --lam 200 --msssim-weight 10 \
    --val-every 1000 --ckpt-every 1000 --log-every 50 --threads 4 --no-progress \
    > "runs/gpu-$arch.out" 2>&1 &
done
wait
for arch in $ARCHS; do
  python3 -m compressnet.train.export "runs/gpu-$arch/ckpt.pt" --slim "$OUT/$arch.pt" &
  cp "runs/gpu-$arch/log.jsonl" "$OUT/$arch.log.jsonl"
  { echo "== $arch"; tail -5 "runs/gpu-$arch.out"; } | tee -a "$OUT/train.out"
  grep -E '"val"|planned' "runs/gpu-$arch/log.jsonl" | tail -4
done
wait
ls -la "$OUT"
