"""A small workload for `compute-sanitizer --tool memcheck` (make gpu-check): two steps of every kernel path
of lrfused's CUDA code. Every (param dtype, state dtype) pair, SGD (plain, momentum, nesterov, maximize,
cycled momentum) and Adam/AdamW (amsgrad, L2 and decoupled weight decay), misaligned views, strided
slices, channels_last, vector tails, empty and one-element tensors, complex parameters, grad_scale with
found_inf both ways, fused clipping, the plateau report, both argument-table sizes and a tensor split
across launches; and the memory options: stochastic rounding, master weights and 8-bit state (alone and
together, on 16-bit and fp32 parameters, a partial last block and a tensor of several chunks). Exits non-zero on a CUDA error; memcheck reports out-of-bounds or misaligned accesses."""
import os
import sys

import torch

import lrfused
from lrfused import schedules as S

DEV = torch.device("cuda")


def make_params(dtype):
    base = torch.randn(4099, device=DEV, dtype=dtype)
    return [
        torch.nn.Parameter(torch.randn(1000, device=DEV, dtype=dtype)),
        torch.nn.Parameter(base[1:4098]),                         # misaligned view, odd tail
        torch.nn.Parameter(torch.randn(64, 7, device=DEV, dtype=dtype)[::2]),  # strided slice: staged
        torch.nn.Parameter(torch.randn(2, 3, 5, 5, device=DEV, dtype=dtype).to(memory_format=torch.channels_last)),
        torch.nn.Parameter(torch.randn(0, device=DEV, dtype=dtype)),  # empty
        torch.nn.Parameter(torch.randn(1, device=DEV, dtype=dtype)),
        torch.nn.Parameter(torch.randn(65536 * 2 + 17, device=DEV, dtype=dtype)),  # several chunks + tail
    ]


def run(opt, params, steps=2, scaled=False, report=False):
    for i in range(steps):
        for p in params:
            p.grad = torch.randn_like(p)
        if scaled:
            opt.step(grad_scale=torch.tensor(3.0, device=DEV), found_inf=torch.tensor(float(i % 2), device=DEV))
        else:
            opt.step()
        if report:
            opt.report(torch.tensor(1.0 / (i + 1), device=DEV))


def main():
    cases = 0
    pairs = [(torch.float32, None), (torch.float32, torch.bfloat16), (torch.float16, None),
             (torch.float16, torch.float32), (torch.bfloat16, None), (torch.bfloat16, torch.float32),
             (torch.float64, None)]
    configs = [
        (lrfused.SGD, dict(lr=0.1)),
        (lrfused.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2)),
        (lrfused.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, maximize=True, max_grad_norm=1.0)),
        (lrfused.Adam, dict(lr=1e-3, amsgrad=True, weight_decay=1e-2)),
        (lrfused.AdamW, dict(lr=1e-3, max_grad_norm=0.5)),
        (lrfused.AdamW, dict(lr=1e-3, amsgrad=True, maximize=True)),
    ]
    for dtype, state_dtype in pairs:
        for cls, kw in configs:
            params = make_params(dtype)
            run(cls(params, schedule=S.OneCycleLR(0.1, total_steps=10), state_dtype=state_dtype, **kw),
                params, scaled=True)
            cases += 1
    complex_params = [torch.nn.Parameter(torch.randn(33, device=DEV, dtype=torch.complex64))]
    run(lrfused.AdamW(complex_params, lr=1e-3, max_grad_norm=1.0), complex_params)
    sgd_cycle = make_params(torch.float32)
    run(lrfused.SGD(sgd_cycle, lr=0.1, schedule=S.CyclicLR(0.01, 0.1, step_size_up=2)), sgd_cycle)
    plateau = make_params(torch.float32)
    run(lrfused.Adam(plateau, lr=1e-3, schedule=S.ReduceLROnPlateau(patience=0)), plateau, steps=3, report=True)
    many = [torch.nn.Parameter(torch.randn(37, device=DEV)) for _ in range(3000)]  # several launches
    run(lrfused.AdamW(many, lr=1e-3), many)
    cases += 4
    memory = [
        (torch.bfloat16, dict(stochastic_rounding=True)),
        (torch.float32, dict(stochastic_rounding=True, state_dtype=torch.bfloat16)),
        (torch.bfloat16, dict(master_weights=True, state_dtype=torch.float32)),
        (torch.float16, dict(master_weights=True)),
        (torch.float32, dict(optim_bits=8)),
        (torch.bfloat16, dict(optim_bits=8, stochastic_rounding=True)),
        (torch.float16, dict(optim_bits=8, master_weights=True)),
    ]
    for dtype, options in memory:
        for cls, kw in ((lrfused.SGD, dict(lr=0.1, momentum=0.9)), (lrfused.AdamW, dict(lr=1e-3, max_grad_norm=1.0))):
            params = make_params(dtype)
            run(cls(params, schedule=S.OneCycleLR(0.1, total_steps=10), **kw, **options), params, scaled=True)
            cases += 1
    torch.cuda.synchronize()
    print(f"sanitize workload: {cases} cases ran, tables: "
          f"{'4 KB (forced)' if os.environ.get('LRFUSED_CUDA_SMALL_TABLES') == '1' else 'default'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
