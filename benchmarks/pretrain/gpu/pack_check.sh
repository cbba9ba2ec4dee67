#!/bin/bash
# The lent GPU's second call of 2026-12-04: does `pack` train and refine on CUDA end to end?
# Packs the bundled examples with --device cuda (pyramid at q6: fine-tuning, relaxation and the
# integer search; autoencoder at q4), then extracts and verifies every archive.
# usage (device): bash benchmarks/pretrain/gpu/pack_check.sh OUT   (wheels of missing packages in .whl)
set -u
OUT=$1
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
PY=${PYTHON:-python3}
DEV=${DEVICE:-cuda}
W=$(mktemp -d)
$PY -c "import torch, onnxruntime; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'ort', onnxruntime.get_available_providers())"
for spec in "pyramid 6" "autoencoder 4"; do
  set -- $spec
  echo "== $1 q$2 on $DEV"
  s=$SECONDS; $PY -m archiver pack examples -o "$W/$1.nca" --codec "$1" --quality "$2" --device "$DEV" \
    --time-limit 20s --refine-time 20s --quiet || echo "PACK FAILED: $1"; echo "pack $((SECONDS - s)) s"
  $PY -m archiver info "$W/$1.nca" 2>&1 | grep -i -E "device|psnr|bpp|steps|codec" | head -12
  s=$SECONDS; $PY -m archiver extract "$W/$1.nca" -o "$W/out-$1" --quiet || echo "EXTRACT FAILED: $1"; echo "extract $((SECONDS - s)) s"
  $PY -m archiver verify --decode "$W/$1.nca" || echo "VERIFY FAILED: $1"
done
