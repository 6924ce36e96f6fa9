"""Build of lrfused's compiled core.

The CPU extension always builds. The CUDA kernels are added when torch was built with CUDA and nvcc is
found; LRFUSED_CUDA=1 forces them (an error where they cannot build), LRFUSED_CUDA=0 leaves them out.

CUDA toolkit: $CUDA_HOME when set, else the one behind the nvcc on PATH (tools/cuda_build.py; wrapper
scripts are resolved). GPU architectures: $TORCH_CUDA_ARCH_LIST when set, else tools/cuda_build.py's
DEFAULT_ARCHS that this nvcc supports, with PTX for the newest.

Floating point: no contraction of a*b+c into fused multiply-adds, on the host (-ffp-contract=off) or the
device (-fmad=false). The schedule and update math (schedule.h, update_math.h) then round the same in the
CPU kernels' vector loops and scalar tails, in the CUDA kernels and in Schedule.lr_at, whatever the thread
count; the kernels are memory-bound, so the extra instructions cost nothing measurable.
"""
import glob
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import cuda_build  # noqa: E402  (tools/cuda_build.py: toolkit and architectures, named once)

NO_CONTRACTION_CXX = ["-ffp-contract=off"]
NO_CONTRACTION_NVCC = ["-fmad=false"]


def _locate_cuda_toolkit():
    """Sets CUDA_HOME before torch.utils.cpp_extension reads it (at import), and says what was found."""
    home = cuda_build.find_cuda_home()
    if home is not None and not os.environ.get("CUDA_HOME") and not os.environ.get("CUDA_PATH"):
        os.environ["CUDA_HOME"] = home
    return home


def _want_cuda():
    _locate_cuda_toolkit()
    import torch
    from torch.utils.cpp_extension import CUDA_HOME

    request = os.environ.get("LRFUSED_CUDA", "auto").strip().lower()
    if request not in ("auto", "0", "1"):
        raise SystemExit(f"LRFUSED_CUDA must be 0, 1 or auto, got {request!r}")
    torch_has_cuda = torch.version.cuda is not None
    nvcc = shutil.which("nvcc") or (CUDA_HOME and os.path.join(CUDA_HOME, "bin", "nvcc"))
    nvcc_found = bool(nvcc) and os.path.exists(nvcc)
    if request == "0":
        return False
    if request == "1":
        if not torch_has_cuda:
            raise SystemExit("LRFUSED_CUDA=1 but this torch has no CUDA (torch.version.cuda is None)")
        if not nvcc_found:
            raise SystemExit("LRFUSED_CUDA=1 but nvcc was not found (set CUDA_HOME or PATH)")
        return True
    if torch_has_cuda and nvcc_found:
        return True
    why = "torch has no CUDA" if not torch_has_cuda else "nvcc was not found"
    print(f"lrfused: building the CPU extension only ({why}); set LRFUSED_CUDA=1 to require CUDA",
          file=sys.stderr)
    return False


def _extensions():
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    def rel(pattern):
        return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))

    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    sources = [s for s in sources if not s.endswith("cuda_glue.cpp")]
    # The C++ standard is cpp_extension's choice (it matches the torch headers).
    cxx = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-DNDEBUG"] + NO_CONTRACTION_CXX
    include_dirs = [os.path.join(ROOT, "csrc")]
    if _want_cuda():
        from torch.utils.cpp_extension import CUDA_HOME

        sources += rel("csrc/cuda_glue.cpp") + rel("csrc/cuda/*.cu")
        nvcc_bin = os.path.join(CUDA_HOME, "bin", "nvcc")
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            # cpp_extension turns this into -gencode flags (and would otherwise ask the visible GPUs).
            os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_build.default_arch_list(nvcc_bin)
        print(f"lrfused: CUDA {cuda_build.nvcc_version(nvcc_bin)} toolkit at {CUDA_HOME}; "
              f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}", file=sys.stderr)
        # No --use_fast_math: approximate sqrt/division and flushed denormals would break parity with torch.
        nvcc = ["-O3", "-lineinfo", "-DLRFUSED_WITH_CUDA"] + NO_CONTRACTION_NVCC
        return [CUDAExtension("lrfused._C", sources, include_dirs=include_dirs,
                              extra_compile_args={"cxx": cxx + ["-DLRFUSED_WITH_CUDA"], "nvcc": nvcc},
                              extra_link_args=["-fopenmp"])]
    return [CppExtension("lrfused._C", sources, include_dirs=include_dirs,
                         extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(ext_modules=_extensions(), cmdclass=_cmdclass())
