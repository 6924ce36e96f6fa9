"""Host-side launch planning of the CUDA kernels (csrc/cuda/plan_chunks.h), checked without a GPU.

plan_chunks.h is plain C++, so a C++ compiler builds its test program here; the CUDA kernels consume the
same plan on a GPU machine.
"""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CXX = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


@pytest.mark.skipif(CXX is None, reason="no C++ compiler found")
def test_plan_chunks_cpp(tmp_path):
    exe = tmp_path / "plan_chunks_test"
    src = os.path.join(ROOT, "csrc", "cuda", "plan_chunks_test.cpp")
    subprocess.run([CXX, "-std=c++17", "-O1", "-Wall", "-Werror", "-I", os.path.join(ROOT, "csrc"), src,
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "all checks passed" in run.stdout
