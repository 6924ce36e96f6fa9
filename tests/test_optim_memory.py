"""'Nothing allocated per step after the first' (API.md), measured three ways on CPU:

* tensor allocations, counted by torch.profiler(profile_memory=True): every allocation through
  c10's CPU allocator shows up as an event with positive self memory; after warm-up a step must
  produce none.  (For scale: torch's own fused AdamW allocates one 4-byte tensor per step, its
  single-tensor AdamW ~8 KB per step here; torch's fused SGD allocates nothing.)
* Python objects retained, by tracemalloc over thousands of steps;
* process RSS growth over thousands of steps.
"""
import gc
import tracemalloc

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import lrfused
from lrfused import schedules as S

SHAPES = [(65536,), (256, 255), (1000,), (3,)]  # ~1 MiB of fp32 parameters


def _setup(opt_name="AdamW", schedule="default", **options):
    g = torch.Generator().manual_seed(61)
    params = [torch.randn(s, generator=g).requires_grad_(True) for s in SHAPES]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 1e-2
    if schedule == "default":
        schedule = S.CosineAnnealingWarmRestarts(T_0=50, T_mult=2)
    opt = getattr(lrfused, opt_name)(params, lr=1e-3, schedule=schedule, **options)
    for _ in range(5):  # warm-up: state, launch plan and schedule buffers are created here
        opt.step()
    return opt, params


def _allocations(fn, n):
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        for _ in range(n):
            fn()
    allocs = [e for e in prof.events() if e.self_cpu_memory_usage > 0]
    return len(allocs), sum(e.self_cpu_memory_usage for e in allocs), sorted({e.name for e in allocs})


def test_allocation_counter_sees_small_allocations():
    """Guard for the measurement itself: a single 4-byte tensor per call is counted."""
    count, nbytes, _ = _allocations(lambda: torch.tensor(1.0), 20)
    assert count == 20 and nbytes == 80


@pytest.mark.parametrize("opt_name,options", [("AdamW", {}), ("Adam", {"amsgrad": True}), ("SGD", {"momentum": 0.9, "nesterov": True})])
@pytest.mark.parametrize("sched", ["warm_restarts", "onecycle", "plateau", "none"])
def test_no_tensor_allocated_per_step(opt_name, options, sched):
    schedule = {
        "warm_restarts": "default",
        "onecycle": S.OneCycleLR(max_lr=1e-2, total_steps=1000),
        "plateau": S.ReduceLROnPlateau(patience=1),
        "none": None,
    }[sched]
    opt, params = _setup(opt_name, schedule, **options)
    count, nbytes, names = _allocations(opt.step, 200)
    assert count == 0, f"{count} allocations ({nbytes} bytes) in 200 steps, from {names}"


def test_no_tensor_allocated_per_step_with_grad_scale_and_found_inf():
    opt, params = _setup("AdamW")
    grad_scale, found_inf = torch.tensor(1024.0), torch.tensor(0.0)
    opt.step(grad_scale=grad_scale, found_inf=found_inf)
    count, nbytes, names = _allocations(lambda: opt.step(grad_scale=grad_scale, found_inf=found_inf), 200)
    assert count == 0, f"{count} allocations ({nbytes} bytes) in 200 steps, from {names}"


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _steady_state(steps):
    opt, params = _setup("AdamW", S.OneCycleLR(max_lr=1e-2, total_steps=steps + 100))
    for _ in range(50):
        opt.step()
    gc.collect()
    rss0 = _rss_bytes()
    tracemalloc.start()
    try:
        # gc.collect() (a full collection) also empties CPython's free lists (up to 2000 tuples per
        # size, ...), which steps then refill: memory parked there is not retained by lrfused, so the
        # growth is measured between two full collections.
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(steps):
            opt.step()
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss1 = _rss_bytes()
    # one retained Python object per step (>= 32 bytes) would add >= 64 KB over 2000 steps
    assert current - base < 16 * 1024, f"Python memory grew by {current - base} bytes over {steps} steps"
    # one leaked parameter-sized buffer per step would be >= 1 MiB per step
    assert rss1 - rss0 < 2 * 1024 * 1024, f"RSS grew by {(rss1 - rss0) / 2**20:.2f} MiB over {steps} steps"


def test_memory_flat_over_2000_steps():
    _steady_state(2000)


@pytest.mark.slow
def test_memory_flat_over_20000_steps():
    _steady_state(20000)
