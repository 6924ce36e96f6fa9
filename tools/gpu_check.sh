#!/usr/bin/env bash
# make gpu-check: everything a GPU can prove about lrfused, in one command of at most ~9 minutes, for a
# machine with a GPU, a CUDA build of torch, nvcc and pytest, and no network.
#
#   1. build for the local GPU's architecture only, and load (every op must have a CUDA kernel)
#   2. the `cuda`-marked tests, each under a time limit (LRFUSED_TEST_TIMEOUT)
#   3. compute-sanitizer --tool memcheck over a small workload that touches every kernel path
#   4. a short GPU benchmark: lrfused against torch's fused AdamW/SGD + scheduler, same-run copy bandwidth;
#      then the AdamW memory options (benchmarks.memory) on the GPT-2-small list
#
# Every log and summary.json go to $OUT (default build/gpu-check). A phase that no longer fits in the time
# budget (GPU_CHECK_BUDGET_S, default 500 s) is skipped and named in the summary; a phase that fails does
# not stop the ones after it. Exit status: 0 when every phase that ran passed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/build/gpu-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
BUDGET="${GPU_CHECK_BUDGET_S:-500}"
START=$(date +%s)
PHASES="$OUT/phases.tsv"
: > "$PHASES"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }

# run_phase NAME MIN_SECONDS MAX_SECONDS COMMAND...: runs COMMAND with its output in $OUT/NAME.log, under a
# limit of min(MAX_SECONDS, time left); skipped when less than MIN_SECONDS are left.
run_phase() {
  local name="$1" need="$2" cap="$3"
  shift 3
  local budget
  budget=$(left)
  if (( budget < need )); then
    echo "gpu-check: $name skipped ($budget s left, needs $need s)"
    printf '%s\tskipped\t0\t-\tonly %s s left of the budget\n' "$name" "$budget" >> "$PHASES"
    return 0
  fi
  (( budget > cap )) && budget=$cap
  echo "gpu-check: $name (limit ${budget} s)"
  local t0 rc
  t0=$(date +%s)
  timeout --kill-after=10 "$budget" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  local status=passed
  (( rc == 124 || rc == 137 )) && status=timed-out
  (( rc != 0 && rc != 124 && rc != 137 )) && status=failed
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" "$rc" "$name.log" >> "$PHASES"
  echo "gpu-check: $name $status (rc $rc, $(( $(date +%s) - t0 )) s)"
  tail -n 5 "$OUT/$name.log"
}

{
  echo "date: $(date -u +%FT%TZ)"
  if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1; else echo "nvidia-smi: not found"; fi
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0]); print("torch", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())' 2>&1
  nvcc --version 2>&1 | tail -n 1
} > "$OUT/env.txt"
cat "$OUT/env.txt"

HAS_GPU=$("$PY" -c 'import torch; print(int(torch.cuda.is_available()))' 2>/dev/null || echo 0)
if [[ "$HAS_GPU" == 1 ]]; then
  export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-$("$PY" -c 'import torch; c = torch.cuda.get_device_capability(); print(f"{c[0]}.{c[1]}")')}"
else
  echo "gpu-check: no GPU visible to torch: building and loading only; the GPU phases report 'no GPU'"
fi
export CUDA_HOME="${CUDA_HOME:-$(python3 tools/cuda_build.py home)}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

run_phase build 60 300 env LRFUSED_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -e .
run_phase load 10 60 "$PY" - <<'PY'
import torch
import lrfused
from lrfused import _ops
assert _ops._C.built_with_cuda(), "lrfused was built without its CUDA kernels"
ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("lrfused::"))
missing = [n for n in ops if not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
assert ops and not missing, f"ops without a CUDA kernel: {missing}"
print("loaded:", lrfused.__file__, "ops:", ops, "has_cuda:", _ops.has_cuda())
PY

if [[ "$HAS_GPU" == 1 ]]; then
  run_phase cuda-tests 60 300 env LRFUSED_TEST_TIMEOUT=60 "$PY" -m pytest -q -p no:cacheprovider -m cuda --durations=20 \
    --junitxml="$OUT/cuda-tests.xml" tests
  if command -v compute-sanitizer > /dev/null || [[ -x "$CUDA_HOME/bin/compute-sanitizer" ]]; then
    SAN="$(command -v compute-sanitizer || echo "$CUDA_HOME/bin/compute-sanitizer")"
    run_phase sanitizer 45 150 "$SAN" --tool memcheck --leak-check full --error-exitcode 3 \
      "$PY" tools/gpu_sanitize_workload.py
  else
    printf 'sanitizer\tskipped\t0\t-\tcompute-sanitizer not found\n' >> "$PHASES"
  fi
  run_phase benchmark 60 150 "$PY" -m benchmarks.run --device cuda --no-progress --no-plot \
    --workloads 10000x100,1000x16K,1x256M,gpt2-small --optimizers adamw,sgd \
    --contenders torch-fused,lrfused --budget 0.3 --out "$OUT/benchmark" --tag gpu-check
  # the memory options (stochastic rounding, master weights, 8-bit state) on the GPT-2-small list
  run_phase memory-benchmark 30 90 "$PY" -m benchmarks.memory --device cuda --budget 0.3 \
    --out "$OUT/benchmark" --tag gpu-check-memory
else
  for name in cuda-tests sanitizer benchmark memory-benchmark; do
    printf '%s\tskipped\t0\t-\tno GPU\n' "$name" >> "$PHASES"
  done
fi

"$PY" - "$PHASES" "$OUT/summary.json" "$(( $(date +%s) - START ))" <<'PY'
import json, sys
phases = []
for line in open(sys.argv[1]):
    name, status, seconds, rc, detail = line.rstrip("\n").split("\t")
    phases.append({"phase": name, "status": status, "seconds": int(seconds), "rc": rc, "detail": detail})
summary = {"total_seconds": int(sys.argv[3]), "phases": phases,
           "ok": all(p["status"] in ("passed", "skipped") for p in phases),
           "skipped": [p["phase"] + ": " + p["detail"] for p in phases if p["status"] == "skipped"]}
json.dump(summary, open(sys.argv[2], "w"), indent=2)
print(json.dumps(summary, indent=2))
sys.exit(0 if summary["ok"] else 1)
PY
