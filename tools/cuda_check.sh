#!/usr/bin/env bash
# make cuda-check: the CUDA flavour of lrfused built, linked and loaded against a CUDA build of torch, on a
# machine without a GPU, and the test suite run on that build.
#
# The build happens in a copy of the working tree (build/cuda-check/src), so that the CPU build in the tree
# (.venv, lrfused/_C*.so) is left alone; the copy keeps its build folder between runs and the sources'
# times, so ninja recompiles only what changed.
#   usage: tools/cuda_check.sh PYTHON   (PYTHON: the interpreter of a venv with a CUDA build of torch)
#   CUDA_CHECK_TESTS=0 tools/cuda_check.sh PYTHON   build, load and check the dispatcher only
set -euo pipefail
PY="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
COPY="$ROOT/build/cuda-check/src"

"$PY" -c 'import sys, torch; sys.exit(0 if torch.version.cuda else "cuda-check: torch " + torch.__version__ + " in " + sys.executable + " has no CUDA")'
export CUDA_HOME="${CUDA_HOME:-$(python3 "$ROOT/tools/cuda_build.py" home)}"
echo "cuda-check: torch $("$PY" -c 'import torch; print(torch.__version__)'), CUDA_HOME=$CUDA_HOME"

# Fresh copy of every tracked or unignored file (times kept); the copy's build/ folder survives.
mkdir -p "$COPY"
find "$COPY" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | \
   while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done | \
   tar --null -T - -cf -) | tar -C "$COPY" -xf -

cd "$COPY"
start=$(date +%s)
LRFUSED_CUDA=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PY" -m pip install -q --no-build-isolation --no-deps -e .
echo "cuda-check: build took $(( $(date +%s) - start )) s"

# Loads (an op registration mismatch aborts right here), and every op has a CUDA kernel.
"$PY" - <<'PY'
import torch
import lrfused
from lrfused import _ops
assert _ops._C.built_with_cuda(), "lrfused was built without its CUDA kernels"
ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("lrfused::"))
missing = [n for n in ops if torch._C._dispatch_has_kernel_for_dispatch_key(n, "CPU")
           and not torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA")]
assert ops and not missing, f"ops with a CPU kernel but no CUDA kernel: {missing}"
print(f"cuda-check: lrfused loads with its CUDA kernels; {len(ops)} ops, each with CPU and CUDA kernels")
PY

# The suite on this build (tests/test_build.py checks the dispatcher too; CUDA tests skip without a GPU).
# CUDA_CHECK_TESTS=0 stops after the build and the dispatcher check.
if [ "${CUDA_CHECK_TESTS:-1}" != 0 ]; then
  "$PY" -m pytest -q -p no:cacheprovider tests
fi
