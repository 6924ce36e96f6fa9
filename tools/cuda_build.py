"""Where the CUDA toolkit is and which GPU architectures lrfused builds for: the one place that names them.

Used by setup.py (the extension build), by `make nvcc-check` (plain-nvcc compile check of the kernels) and by
`make gpu-check` (build for the local GPU only). Needs only the standard library, so it runs before torch
is installed.

    python3 tools/cuda_build.py home          the toolkit folder (what CUDA_HOME should be)
    python3 tools/cuda_build.py arch-list     the default TORCH_CUDA_ARCH_LIST for this nvcc
    python3 tools/cuda_build.py gencode       nvcc -gencode flags for TORCH_CUDA_ARCH_LIST (or the default)
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

# Machine code for these (Ampere, Hopper, Blackwell datacenter, Blackwell consumer) where this nvcc knows
# them, plus PTX of the newest one so that later GPUs can JIT-compile it.
DEFAULT_ARCHS = ("8.0", "9.0", "10.0", "12.0")


def _has_runtime_header(home: str) -> bool:
    return os.path.exists(os.path.join(home, "include", "cuda_runtime.h"))


def find_cuda_home() -> str | None:
    """The CUDA toolkit folder: $CUDA_HOME or $CUDA_PATH when set; else the folder of the nvcc on PATH,
    resolved through wrapper scripts (`nvcc -dryrun` prints the real toolkit as TOP); else /usr/local/cuda."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            return os.environ[var]
    nvcc = shutil.which("nvcc")
    if nvcc:
        guess = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if _has_runtime_header(guess):
            return guess
        try:
            out = subprocess.run([nvcc, "-dryrun", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=60)
            text = out.stdout + out.stderr
        except (OSError, subprocess.SubprocessError):
            text = ""
        match = re.search(r"^#\$ TOP=(.+)$", text, flags=re.MULTILINE)
        if match:
            top = os.path.normpath(match.group(1).strip())
            if _has_runtime_header(top):
                return top
    if _has_runtime_header("/usr/local/cuda"):
        return "/usr/local/cuda"
    return None


def nvcc_path(home: str | None = None) -> str | None:
    home = home if home is not None else find_cuda_home()
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc")
    return shutil.which("nvcc")


def nvcc_version(nvcc: str) -> str:
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    match = re.search(r"release ([0-9.]+)", out)
    return match.group(1) if match else "unknown"


def supported_archs(nvcc: str) -> set[str]:
    """The real architectures ("8.0", "9.0", ...) this nvcc can generate machine code for."""
    try:
        out = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    archs = set()
    for code in out.split():
        match = re.fullmatch(r"sm_(\d+)(\d)", code)
        if match:
            archs.add(f"{match.group(1)}.{match.group(2)}")
    return archs


def default_arch_list(nvcc: str | None = None) -> str:
    """DEFAULT_ARCHS that this nvcc supports, in TORCH_CUDA_ARCH_LIST syntax, PTX for the newest."""
    nvcc = nvcc or nvcc_path()
    known = supported_archs(nvcc) if nvcc else set()
    archs = [a for a in DEFAULT_ARCHS if a in known] or list(DEFAULT_ARCHS[:2])
    archs[-1] += "+PTX"
    return ";".join(archs)


def gencode_flags(arch_list: str) -> list[str]:
    """nvcc flags for a TORCH_CUDA_ARCH_LIST value ("8.0;9.0+PTX", spaces allowed), as torch forms them."""
    flags = []
    for arch in arch_list.replace(" ", ";").split(";"):
        if not arch:
            continue
        num = arch.split("+")[0].replace(".", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
        if arch.endswith("+PTX"):
            flags.append(f"-gencode=arch=compute_{num},code=compute_{num}")
    return flags


def main(argv: list[str]) -> int:
    what = argv[1] if len(argv) > 1 else ""
    if what == "home":
        home = find_cuda_home()
        if home is None:
            print("no CUDA toolkit found (set CUDA_HOME)", file=sys.stderr)
            return 1
        print(home)
    elif what == "arch-list":
        print(default_arch_list())
    elif what == "gencode":
        print(" ".join(gencode_flags(os.environ.get("TORCH_CUDA_ARCH_LIST") or default_arch_list())))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
