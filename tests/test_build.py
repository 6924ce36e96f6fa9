"""The compiled extension as built: every op registered, each backend's kernels complete.

On a CUDA build (`make cuda-check` builds one without a GPU) every op with a CPU kernel must also have a
CUDA kernel; on a CPU build none has one. Importing lrfused at all already proves that the CPU and CUDA
kernels of each op agree on its C++ signature (the dispatcher aborts the process otherwise).
"""
import torch

import lrfused
from lrfused import _ops

EXPECTED_OPS = {"fused_sgd_", "fused_adam_", "advance_", "plateau_report_", "greedy_report_", "grad_sq_norm", "schedule_lrs",
                "schedule_momenta"}


def _lrfused_ops():
    return sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("lrfused::"))


def _has_kernel(op, key):
    return torch._C._dispatch_has_kernel_for_dispatch_key(op, key)


def test_every_op_is_registered_with_a_cpu_kernel():
    ops = _lrfused_ops()
    assert {n.split("::")[1] for n in ops} == EXPECTED_OPS
    assert all(_has_kernel(op, "CPU") for op in ops)


def test_cuda_kernels_exactly_in_cuda_builds():
    ops = _lrfused_ops()
    with_cuda = [op for op in ops if _has_kernel(op, "CUDA")]
    if _ops._C.built_with_cuda():
        assert with_cuda == ops, f"ops without a CUDA kernel: {sorted(set(ops) - set(with_cuda))}"
    else:
        assert with_cuda == []


def test_every_op_has_a_fake_kernel_for_tracing():
    for op in _lrfused_ops():
        name = op.split("::")[1]
        assert torch._library.simple_registry.singleton.find(op).fake_impl.kernel is not None, name


def test_has_cuda_reflects_build_and_device():
    assert lrfused._ops.has_cuda() == (_ops._C.built_with_cuda() and torch.cuda.is_available())
