#!/usr/bin/env bash
# The GPU path, checked in one run (under 8 minutes on one H100):
#   1. bf16 training steps of LoRA / LoRI-D / LoRI-S at Llama-3.2-1B and Llama-3-8B shapes (random
#      weights from the config, no download): tokens/s and peak memory   -> OUT/train.json
#   2. a factor-space merge at 8B shapes against the dense computation    -> OUT/merge.json
#   3. FSDP2 on every GPU present: torchrun lorikit train --bf16            -> OUT/fsdp.log, OUT/fsdp/
#   4. the default study at one seed (lorikit study --seeds 1)             -> OUT/study/, OUT/study.log
# Usage: bash bench/gpu_check.sh [--dry-run] [--out DIR]   (default OUT: runs/gpu-check)
# --dry-run: the same steps on the CPU at tiny shapes (tiny-random-llama, a 2-step study), to check
# the script where there is no GPU.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="runs/gpu-check"
dry=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry="--dry-run" ;;
    --out) out="$2"; shift ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --dry-run, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
py="${PYTHON:-python}"
mkdir -p "$out"
start=$(date +%s)
stamp() { echo "gpu_check: $1 ($(( $(date +%s) - start )) s)"; }

if [ -z "$dry" ]; then
  "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "gpu_check.sh: no CUDA GPU visible (use --dry-run to check the script on the CPU)" >&2; exit 1; }
  gpus=$("$py" -c "import torch; print(torch.cuda.device_count())")
  fsdp_model="$out/llama-1b-random"
  "$py" - "$fsdp_model" <<'PY'
import sys
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from lorikit.models.loading import build_tiny_tokenizer
cfg = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=260, max_position_embeddings=4096)
LlamaForCausalLM(cfg).save_pretrained(sys.argv[1])
build_tiny_tokenizer().save_pretrained(sys.argv[1])  # byte-level: any text, no download
PY
  fsdp=(torchrun --nproc_per_node "$gpus" -m lorikit train --model "$fsdp_model" --method lori-d --bf16
        --data builtin:pair-add --builtin-rows 256 --max-steps 10 --batch-size 8 --out "$out/fsdp" --overwrite)
  study=(-m lorikit study --seeds 1 --workdir "$out/study")
else
  fsdp=(torchrun --nproc_per_node 1 -m lorikit train --model tiny-random-llama --method lori-d --device cpu
        --data builtin:pair-add --builtin-rows 16 --max-steps 2 --batch-size 4 --out "$out/fsdp" --overwrite)
  study=(-m lorikit study --seeds 1 --workdir "$out/study" --model tiny-random-llama --max-steps 2
         --eval-every 1 --eval-examples 4 --builtin-rows 40 --tasks pair-greater pair-max --methods lora lori-d
         --weights 1 --samples 2)
fi

"$py" "$here/gpu_check.py" --part train $dry --out "$out";  stamp "training steps done"
"$py" "$here/gpu_check.py" --part merge $dry --out "$out";  stamp "merge done"
"${fsdp[@]}" > "$out/fsdp.log" 2>&1;                          stamp "FSDP2 done ($out/fsdp.log)"
"$py" "${study[@]}" > "$out/study.log" 2>&1;                  stamp "study done ($out/study.log)"
tail -n 20 "$out/study/table/"*.md 2>/dev/null || true
