"""Argument checks of the optimizers that need no optimizer state: hyperparameters, torch's keywords,
and parameters that share memory."""
from __future__ import annotations

import math
import numbers

import torch

def _is_number(x) -> bool:
    """A real number: Python's or numpy's (numbers.Real), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_scalar_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.numel() == 1 and not x.is_complex()


def _check_nonnegative(value, name: str, message: str, tensor_ok: bool = True) -> None:
    """torch's check of a hyperparameter: a number, or (where torch takes one) a one-element tensor, >= 0.
    A tensor's value is read once here (on a GPU that synchronises once, at construction)."""
    if isinstance(value, torch.Tensor):
        if not tensor_ok:
            raise TypeError(f"lrfused: {name} must be a number, got a Tensor (torch takes only a number here)")
        if not _is_scalar_tensor(value):
            raise ValueError(f"Tensor {name} must be 1-element")
        number = float(value)
    elif _is_number(value):
        number = float(value)
    else:
        raise TypeError(f"lrfused: {name} must be a number, got {type(value).__name__}")
    if not 0.0 <= number < math.inf:  # also rejects NaN
        raise ValueError(f"{message}: {value}")


def _check_torch_keywords(foreach, fused, differentiable) -> None:
    """torch's implementation switches. lrfused is always one fused, capturable pass, so foreach, fused and
    capturable choose nothing; they are accepted (with torch's checks) so that scripts keep working."""
    if differentiable:
        raise NotImplementedError(
            "lrfused: differentiable=True is not supported: the fused kernels update parameters in place outside "
            "autograd, so the step cannot be differentiated through; use torch.optim with differentiable=True")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")


def _real_dtype(t: torch.Tensor) -> torch.dtype:
    return t.real.dtype if t.is_complex() else t.dtype


# The state key of a 16-bit parameter's float32 master copy (TransformerEngine's FusedAdam's name).
MASTER_KEY = "master_param"
_MASTER_DTYPES = (torch.bfloat16, torch.float16)


def _takes_master(p: torch.Tensor) -> bool:
    """master_weights applies to bfloat16 and float16 parameters."""
    return not p.is_complex() and p.dtype in _MASTER_DTYPES


def _rounds_stochastically(p: torch.Tensor, state_dtype: torch.dtype, master: bool) -> bool:
    """stochastic_rounding applies to what the kernel stores in bfloat16: a bfloat16 parameter without a
    master copy, bfloat16 state."""
    return (p.dtype == torch.bfloat16 and not master) or (not p.is_complex() and state_dtype == torch.bfloat16)


def _is_dtensor(t) -> bool:
    return type(t).__name__ == "DTensor" and hasattr(t, "_local_tensor")


def _local(t):
    """The tensor the kernels update: a DTensor's local shard (FSDP2), else the tensor itself."""
    return t._local_tensor if _is_dtensor(t) else t


def _byte_span(t: torch.Tensor):
    """(storage key, first byte, one past the last byte) of the memory t's elements occupy, or None."""
    t = _local(t)
    if t.numel() == 0 or t.device.type == "meta":
        return None
    base = t.untyped_storage().data_ptr()
    if base == 0:
        return None
    extent = 1 + sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
    first = t.storage_offset() * t.element_size()
    return (t.device, base), first, first + extent * t.element_size()


def _share_elements(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors whose byte spans in one storage intersect store an element at the same address
    (interleaved views such as buf[:, :3] and buf[:, 3:] do not): the element offsets of each, compared.
    Different element sizes count as sharing."""
    a, b = _local(a), _local(b)
    if a.element_size() != b.element_size():
        return True
    lo = min(a.storage_offset(), b.storage_offset())
    hi = max(_byte_span(t)[2] // t.element_size() for t in (a, b))
    offsets = torch.arange(hi - lo)
    ia, ib = (offsets.as_strided(t.shape, t.stride(), t.storage_offset() - lo).flatten() for t in (a, b))
    return bool(torch.isin(ia, ib).any())


def _check_no_shared_memory(params) -> None:
    """Refuses parameters whose memory overlaps: the fused step updates parameters in parallel (and a
    staged copy of one would be written back over the other's update), where torch's for-loop updates them
    one after the other. Parameters that are disjoint views of one buffer are fine."""
    spans: dict = {}
    for i, p in enumerate(params):
        span = _byte_span(p)
        if span is not None:
            spans.setdefault(span[0], []).append((span[1], span[2], i))
    for same_storage in spans.values():
        if len(same_storage) < 2:
            continue
        same_storage.sort()
        reach, owner = same_storage[0][1], same_storage[0][2]
        for first, end, i in same_storage[1:]:
            if first < reach and _share_elements(params[owner], params[i]):
                a, b = params[owner], params[i]
                raise ValueError(
                    f"lrfused: two parameters share memory (shapes {tuple(a.shape)} and {tuple(b.shape)}, one "
                    f"a view of the other or both views of one buffer with overlapping elements); a fused step "
                    f"updates parameters in parallel, so it cannot reproduce torch's one-after-the-other "
                    f"updates of shared elements. Optimize the base tensor only, or give each its own memory.")
            if end > reach:
                reach, owner = end, i
