#!/usr/bin/env bash
# Fine-tune the bundled default's decoder on a lent GPU (its encoder frozen, so the payload of a
# photo stays the same) and, beside it, fit context networks on the encoder's symbols.
# Two decoder runs side by side through scripts/gpu_train.sh (MS-SSIM weight 20 and 50), and one
# fit per batch size in CTX_BATCHES; all from .gpu/, prepared on the CPU machine with
#   python scripts/pack_training_data.py ../shared/data/train .gpu/train --max-side 768 \
#       --format .webp --quality 62
#   compressnet fit-entropy src/compressnet/weights/sae-spn-lite.safetensors \
#       ../shared/data/train -o /tmp/x.safetensors --maps .gpu/maps.npz --net-steps 0
# (the symbol maps of the full-size photos; the fit there reads them by the packed files' stems)
# and the wheels of constriction and pytorch-msssim in .gpu/whl (see gpu_train.sh). Then here:
#   compressnet export OUT/dec20.pt --latent-models OUT/ctx-b64.safetensors -o W
# Options through the environment: BUDGET (minutes, 9), CTX_MIN (8), CTX_BATCHES ("16 64"), DEVICE,
# RUNS (as gpu_train.sh reads it; default: the two frozen-encoder runs below).
# 2026-11-29's call (dec2, full2 and ms100 in the README's variants table; nothing shipped):
#   F='--init sae-spn-lite --colour-layer --lr 1e-4 --warmup 100 --ckpt-every 500 --val-every 1000'
#   RUNS="dec=sae-spn $F --freeze-encoder --msssim-weight 20; full=sae-spn $F --msssim-weight 20;
#     ms100=sae-spn $F --freeze-encoder --msssim-weight 100" CTX_BATCHES=128 BUDGET=8.4 \
#     CTX_MIN=7.8 bash scripts/gpu_finetune_decoder.sh
# It took 598 of the lent machine's 600 seconds a call: keep BUDGET and CTX_MIN under 8.5.
set -u
OUT=${OUT:-out}; mkdir -p "$OUT" runs
if ! python3 -c "import constriction, pytorch_msssim" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD/src PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
W=src/compressnet/weights/sae-spn-lite.safetensors
for b in ${CTX_BATCHES:-16 64}; do
  OMP_NUM_THREADS=2 python3 -m compressnet.train.fit_entropy $W .gpu/train -o "$OUT/ctx-b$b.safetensors" \
    --maps .gpu/maps.npz --device "$DEVICE" --net-steps 1000000 --net-minutes "${CTX_MIN:-8}" \
    --net-batch "$b" --force > "runs/ctx-b$b.out" 2>&1 &
done
INIT='--init sae-spn-lite --freeze-encoder --colour-layer --lr 1e-4 --warmup 100 --ckpt-every 500 --val-every 1000'
DEVICE=$DEVICE STEPS=60000 GAN_START=0 BUDGET=${BUDGET:-9} \
  RUNS=${RUNS:-"dec20=sae-spn $INIT --msssim-weight 20; dec50=sae-spn $INIT --msssim-weight 50"} \
  bash scripts/gpu_train.sh
wait
for f in runs/ctx-*.out; do echo "== $f"; tr '\r' '\n' < "$f" | grep -v '^$' | tail -3; done | tee "$OUT/ctx.log"
ls -la "$OUT"
