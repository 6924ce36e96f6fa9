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
    bitsandbytes and torchao)."""
    return (group.get("optim_bits", 32) == 8 and not p.is_complex() and p.dtype in _QUANTIZABLE_DTYPES
            and p.numel() >= contract.MIN_QUANT_NUMEL)


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
    """Full-precision state (dtype, laid out like p) of 8-bit codes of p."""
    host = torch.empty_like(p, dtype=torch.uint8, memory_format=torch.preserve_format, device="cpu")
    host.copy_(codes)
    flat = _C.dequantize_blockwise(_memory_order(host).contiguous(), absmax.detach().to("cpu", torch.float32)
                                   .contiguous(), signed)
    out = torch.empty_like(p, dtype=dtype, memory_format=torch.preserve_format)
    _memory_order(out).copy_(flat)
    return out


def check_absmax(absmax, p: torch.Tensor, key: str, where: str) -> None:
    """Raises unless ``absmax`` can be the block scales of p's 8-bit state ``key``."""
    blocks = -(-p.numel() // contract.QUANT_BLOCK)
    if not isinstance(absmax, torch.Tensor) or absmax.shape != (blocks,) or not absmax.is_floating_point():
        got = tuple(absmax.shape) if isinstance(absmax, torch.Tensor) else type(absmax).__name__
        raise ValueError(f"lrfused: {where}: 8-bit state '{key}' needs '{absmax_key(key)}', a float32 tensor of "
                         f"{blocks} block scales, got {got}")
