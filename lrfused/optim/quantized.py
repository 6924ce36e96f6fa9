"""optim_bits=8: block-quantized optimizer state (csrc/quant8.h has the format and the kernels' math).

A quantized state tensor is stored as uint8 codes shaped like its parameter (``state[key]``) and one float32
absmax per block of ``contract.QUANT_BLOCK`` elements (``state[key + "_absmax"]``), blocks running over the
parameter's memory order (the order the kernels walk). The conversions here (full precision <-> 8-bit, for
state created from a checkpoint at another precision or a change of optim_bits) call the kernels' own
quantization (``lrfused._C.quantize_blockwise``), so a converted state is what a kernel would have stored.
"""
from __future__ import annotations

import torch

from .. import contract
from .._ops import _C

OPTIM_BITS = (32, 8)
_QUANTIZABLE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def absmax_key(key: str) -> str:
    return key + "_absmax"


def quantizes(p: torch.Tensor, group: dict) -> bool:
    """Whether p's state is 8-bit: its group asks for optim_bits=8, and p is a real float32 / bfloat16 /
    float16 tensor of at least contract.MIN_QUANT_NUMEL elements (smaller ones keep full precision, as in
    bitsandbytes and torchao), not a DTensor shard (refused where asked for)."""
    return (group.get("optim_bits", 32) == 8 and not p.is_complex() and p.dtype in _QUANTIZABLE_DTYPES
            and p.numel() >= contract.MIN_QUANT_NUMEL and type(p).__name__ != "DTensor")


def same_layout(t: torch.Tensor, p: torch.Tensor) -> bool:
    """Whether t is laid out as p's state is created (torch.empty_like(p, preserve_format)): the order in
    which the kernels walk p, so the order of an 8-bit state's blocks."""
    if t.shape != p.shape:
        return False
    if _is_dense(p):  # preserve_format keeps a dense tensor's strides
        return all(a == b for a, b, n in zip(t.stride(), p.stride(), p.shape) if n > 1)
    return t.is_contiguous()  # and makes others contiguous


def _is_dense(t: torch.Tensor) -> bool:
    """Non-overlapping and dense: its elements fill a block of memory (in some order of the dimensions)."""
    expected = 1
    for stride, size in sorted((st, n) for st, n in zip(t.stride(), t.shape) if n > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _memory_order(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor's elements as a 1-D view in memory order."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def quantize_like(values: torch.Tensor, p: torch.Tensor, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes shaped and laid out like p, absmax) of full-precision state values of p."""
    dense = torch.empty_like(p, dtype=torch.float32, memory_format=torch.preserve_format, device="cpu")
    dense.copy_(values.detach())
    codes, absmax = _C.quantize_blockwise(_memory_order(dense).contiguous(), signed)
    out = torch.empty_like(p, dtype=torch.uint8, memory_format=torch.preserve_format)
    _memory_order(out).copy_(codes)
    return out, absmax.to(p.device)


def dequantize_like(codes: torch.Tensor, absmax: torch.Tensor, p: torch.Tensor, signed: bool,
                    dtype: torch.dtype) -> torch.Tensor:
    """Full-precision state (dtype, laid out like p) of 8-bit codes of p. The blocks follow the codes' own
    memory order (which may differ from p's after a change of memory format)."""
    host = codes.detach().to("cpu")
    if not _is_dense(host):
        raise ValueError("lrfused: 8-bit codes must be a dense tensor")
    values = torch.empty_like(host, dtype=torch.float32)  # the codes' strides
    _memory_order(values).copy_(_C.dequantize_blockwise(_memory_order(host).contiguous(),
                                                        absmax.detach().to("cpu", torch.float32).contiguous(),
                                                        signed))
    return torch.empty_like(p, dtype=dtype, memory_format=torch.preserve_format).copy_(values)


def check_absmax(absmax, p: torch.Tensor, key: str, where: str) -> None:
    """Raises unless ``absmax`` can be the block scales of p's 8-bit state ``key``."""
    blocks = -(-p.numel() // contract.QUANT_BLOCK)
    if not isinstance(absmax, torch.Tensor) or absmax.shape != (blocks,) or not absmax.is_floating_point():
        got = tuple(absmax.shape) if isinstance(absmax, torch.Tensor) else type(absmax).__name__
        raise ValueError(f"lrfused: {where}: 8-bit state '{key}' needs '{absmax_key(key)}', a float32 tensor of "
                         f"{blocks} block scales, got {got}")
