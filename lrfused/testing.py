"""How close lrfused must come to torch.optim: the one tolerance table of the tests and the benchmarks.

A comparison feeds lrfused and torch's single-tensor optimizer (with the equivalent torch scheduler) the
same initial values and gradients and checks every parameter and state tensor:

    |actual - expected| <= tol * |expected| + tol * scale

* float64: 1e-12.  torch's recursive schedulers drift from the closed form by at most ~2e-14 * base_lr
  over the step counts the tests use (measured for every family), and fp64 update rounding is ~1e-16 per
  step, so 1e-12 leaves two orders of magnitude and still catches any real mistake.
* float32 (no resync, ~100 steps): 1e-5.  Measured: a second, independently written fp32 implementation
  of torch's update math (another operation order, scalars folded in double, as a fused kernel computes)
  disagrees with torch.optim after 100 steps by <= 1e-5 * |e| + 3.3e-7 * scale over SGD (momentum
  0/0.9/0.99, dampening, nesterov, weight decay, maximize) and Adam/AdamW (amsgrad, betas, eps) under
  constant, cosine and cyclic schedules.  1e-5 * scale gives a 30x margin on that, while an off-by-one
  step, a wrong bias correction or a wrong lr is >= 1e-3.
* bfloat16 / float16 (resynced every step, so each check is one update from identical inputs): 3 ulps
  (3 * finfo.eps).  torch's single-tensor path rounds intermediates (grad + wd * p, lr * buf,
  sqrt(v) / bc2) to the parameter dtype; a kernel computing in fp32 rounds once.  Measured: the two
  differ by <= 1.12 * eps * (|e| + scale), with scale the largest magnitude of the tensor before or after
  the step (cancellation makes relative error meaningless near 0, so the bound is in ulps of operands).

``scale`` is ``max(1, max|expected|)`` for parameters, ``exp_avg`` and ``momentum_buffer`` (O(1) by
construction: values and gradients ~ N(0, 1)) and ``max|expected|`` for the squared-gradient averages,
which are O((1 - beta2) g^2) and relatively accurate.

Learning rates are compared with ``LR_RTOL`` relative to the value and ``LR_ATOL_PER_BASE`` relative to
the largest base lr (the same drift bound as above).  On a GPU the device's ``cos`` and ``pow`` may differ
from the host's by up to 2 ulp (CUDA's documented bound); ``DEVICE_LR_ULPS`` ulps leave room for that where
the same schedule is evaluated on both.
"""
from __future__ import annotations

import torch

__all__ = ["TOLERANCE", "LR_RTOL", "LR_ATOL_PER_BASE", "DEVICE_LR_ULPS", "SQUARED_KEYS", "tolerance_scale",
           "assert_close"]

TOLERANCE = {
    torch.float64: 1e-12,
    torch.float32: 1e-5,
    torch.bfloat16: 3 * torch.finfo(torch.bfloat16).eps,
    torch.float16: 3 * torch.finfo(torch.float16).eps,
}
LR_RTOL = 1e-12
LR_ATOL_PER_BASE = 1e-12
DEVICE_LR_ULPS = 8
# State whose values are O((1 - beta2) g^2): scaled by their own magnitude, not by max(1, .)
SQUARED_KEYS = ("exp_avg_sq", "max_exp_avg_sq")


def tolerance_scale(key: str, expected: torch.Tensor, before: torch.Tensor | None = None) -> float:
    """The ``scale`` of a comparison of state ``key`` ("param" for a parameter), given the expected value
    and, where known, the value before the step."""
    m = expected.detach().abs().max().item() if expected.numel() else 0.0
    if before is not None and before.numel():
        m = max(m, before.detach().abs().max().item())
    return m if key in SQUARED_KEYS else max(1.0, m)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, key: str = "param", dtype=None,
                 before: torch.Tensor | None = None, what: str = "") -> None:
    """Raises unless ``actual`` is within the tolerance of ``dtype`` (default: expected's) of ``expected``."""
    dtype = expected.dtype if dtype is None else dtype
    tol = TOLERANCE[dtype]
    scale = tolerance_scale(key, expected, before)
    torch.testing.assert_close(
        actual.detach(), expected.detach(), rtol=tol, atol=tol * scale,
        msg=lambda m: f"{what}: {key} differs (dtype {dtype}, rtol=atol/scale={tol}, scale={scale})\n{m}")
