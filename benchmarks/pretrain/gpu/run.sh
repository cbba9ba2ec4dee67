#!/bin/bash
# The one lent-GPU call of 2026-12-04 (H200, 15 minutes of device time): three variants of
# pyramid-b3 trained side by side for SECONDS each, snapshots in OUT every minute.
#   same spec (candidate b4) | synthesis 48,24 wide | synthesis 64,24 wide
# usage: benchmarks/pretrain/gpu/run.sh SRC OUT SECONDS 2>&1 | tee OUT/all.log
set -u
SRC=$1; OUT=$2; SECONDS_EACH=$3
export PYTHONUNBUFFERED=1
INIT=src/archiver/model/weights/pyramid-b3.npz
nvidia-smi -L 2>/dev/null || true
${PYTHON:-python3} -c "import torch, numpy, PIL; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
for v in "same:" "w48:48,24" "w64:64,24"; do
  name=${v%%:*}; hidden=${v#*:}
  ${PYTHON:-python3} scripts/pretrain_gpu.py --init $INIT ${hidden:+--hidden $hidden} --seconds "$SECONDS_EACH" \
    --src "$SRC" --out "$OUT" --name "$name" --threads 4 2>&1 &
done
wait
