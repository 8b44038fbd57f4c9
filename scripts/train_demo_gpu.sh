#!/usr/bin/env bash
# The built-in model trained on one GPU in a single ~9-minute call (demo_model/gpu_training.py):
# pictures and VAE once, then three denoiser recipes side by side, each exported and judged.
# Run from the repository root on the GPU machine; wheels for packages its image lacks in .whl/.
# Results: $OUT/models.tar.* (split; `cat models.tar.* | tar x`) and $OUT/log.txt.
set -u
OUT=${OUT:-/tmp/demo-gpu-out}
W=${WORKDIR:-/tmp/demo-gpu-train}
PICTURES=${PICTURES:-60000} VAE_SECONDS=${VAE_SECONDS:-90} UNET_SECONDS=${UNET_SECONDS:-240}
BATCH=${BATCH:-256} VAE_BATCH=${VAE_BATCH:-32} EVAL_CASES=${EVAL_CASES:-100} PY=${PY:-python3}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1 | tee "$OUT/log.txt"
$PY -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/log.txt" || exit 1
timeout 200 $PY -m demo_model.gpu_training prepare --workdir "$W" --pictures "$PICTURES" \
  --vae-seconds "$VAE_SECONDS" --vae-batch "$VAE_BATCH" --ceiling-cases "$EVAL_CASES" 2>&1 | tee -a "$OUT/log.txt"
[ -f "$W/latents.pt" ] || exit 1
run() {
  local name=$1; shift
  timeout $((UNET_SECONDS + 120)) $PY -m demo_model.gpu_training denoiser --workdir "$W" --name "$name" \
    --seconds "$UNET_SECONDS" --batch "$BATCH" --eval-cases "$EVAL_CASES" "$@" > "$W/$name.log" 2>&1
}
run small --channels 32,64,128 --zero-snr &
run wide --channels 48,96,192 --text-dim 128 --zero-snr &
run wide-plain --channels 48,96,192 --text-dim 128 &
wait
for log in "$W"/*.log; do echo "== $log"; grep -v Warning "$log" | tail -20; done >> "$OUT/log.txt"
# One VAE travels: the others are the same files.
first=1
for folder in "$W"/out/*/; do
  if [ $first = 0 ]; then rm -rf "$folder/vae"; fi
  first=0
done
tar cf "$W/models.tar" -C "$W/out" . && split -b 15m "$W/models.tar" "$OUT/models.tar."
ls -la "$OUT"
grep -h "scores\|ceilings\|steps of" "$OUT/log.txt"
