"""Build of lrfused's compiled core.

The CPU extension always builds. The CUDA kernels are added when torch was built with CUDA and nvcc is
found; LRFUSED_CUDA=1 forces them (an error where they cannot build), LRFUSED_CUDA=0 leaves them out.
"""
import glob
import os
import shutil
import sys

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda():
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
    cxx = ["-O3", "-std=c++17", "-fno-math-errno", "-fno-trapping-math", "-fopenmp", "-DNDEBUG"]
    include_dirs = [os.path.join(ROOT, "csrc")]
    if _want_cuda():
        sources += rel("csrc/cuda_glue.cpp") + rel("csrc/cuda/*.cu")
        # No --use_fast_math: approximate sqrt/division and flushed denormals would break parity with torch.
        nvcc = ["-O3", "-std=c++17", "-lineinfo", "-DLRFUSED_WITH_CUDA",
                "-gencode=arch=compute_80,code=sm_80", "-gencode=arch=compute_90,code=sm_90",
                "-gencode=arch=compute_90,code=compute_90"]
        return [CUDAExtension("lrfused._C", sources, include_dirs=include_dirs,
                              extra_compile_args={"cxx": cxx + ["-DLRFUSED_WITH_CUDA"], "nvcc": nvcc},
                              extra_link_args=["-fopenmp"])]
    return [CppExtension("lrfused._C", sources, include_dirs=include_dirs,
                         extra_compile_args={"cxx": cxx}, extra_link_args=["-fopenmp"])]


def _cmdclass():
    from torch.utils.cpp_extension import BuildExtension

    return {"build_ext": BuildExtension.with_options(use_ninja=True)}


setup(ext_modules=_extensions(), cmdclass=_cmdclass())
