"""CUDA path: parity with torch's CUDA optimizers + schedulers, CUDA graphs, GradScaler, checkpoints,
many tensors, awkward sizes and layouts, >2^31 elements.

Every test carries the `cuda` marker (conftest skips them without a CUDA build and a GPU). References
run live in the same test: torch's single-tensor path (foreach=False) for fp32/fp64 — the math lrfused
promises element for element — and torch's fused path for fp16/bf16, which like lrfused computes in
fp32 and rounds once (torch's single-tensor path computes in the 16-bit dtype itself).
"""
import math
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.cuda

try:
    import lrfused
    from lrfused import schedules as S
except ImportError:  # collected without a build: every test here is skipped by the cuda marker
    lrfused = None
    S = None

DEV = "cuda"
STEPS = 12
SIZES = [(0,), (1,), (3,), (97,), (4097,), (65537,), (33, 129)]

# (rtol, atol) per dtype for params and state after one step from identical inputs.
TOL = {
    torch.float64: (1e-11, 1e-13),
    torch.float32: (2e-6, 1e-7),
    torch.float16: (2e-3, 1e-4),   # ~2 ulp
    torch.bfloat16: (1.6e-2, 1e-3),  # ~2 ulp
}

OPTIMIZERS = [
    ("SGD", dict(momentum=0.0)),
    ("SGD", dict(momentum=0.9, dampening=0.1, weight_decay=1e-2)),
    ("SGD", dict(momentum=0.9, nesterov=True, maximize=True)),
    ("Adam", dict()),
    ("Adam", dict(weight_decay=1e-2, amsgrad=True)),
    ("Adam", dict(betas=(0.8, 0.99), eps=1e-6, maximize=True)),
    ("AdamW", dict()),
    ("AdamW", dict(weight_decay=0.1, amsgrad=True)),
]

SCHEDULES = {
    "cosine": (lambda: S.CosineAnnealingLR(T_max=7, eta_min=1e-4),
               lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=1e-4)),
    "step": (lambda: S.StepLR(step_size=3, gamma=0.5),
             lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)),
    "linear": (lambda: S.LinearLR(start_factor=0.25, total_iters=5),
               lambda opt: torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=5)),
}

STATE_KEYS = {"SGD": ("momentum_buffer",), "Adam": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
              "AdamW": ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")}


def _make_params(dtype, sizes=SIZES, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(DEV, dtype) for s in sizes]


def _grads(params, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [[torch.randn(p.shape, generator=gen, dtype=torch.float64).to(DEV, p.dtype) for p in params]
            for _ in range(steps)]


def _groups(params, lr):
    half = len(params) // 2
    return [{"params": params[:half], "lr": lr}, {"params": params[half:], "lr": lr * 0.5}]


def _torch_optimizer(name, groups, lr, kw, dtype):
    impl = {"fused": True} if dtype in (torch.float16, torch.bfloat16) else {"foreach": False}
    return getattr(torch.optim, name)(groups, lr=lr, **kw, **impl)


def _assert_close(actual, expected, dtype, what):
    rtol, atol = TOL[dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def _compare_and_resync(opt, ref, ours, theirs, name, dtype, k):
    for i, (p, q) in enumerate(zip(ours, theirs)):
        _assert_close(p, q, dtype, f"step {k} param {i}")
        for key in STATE_KEYS[name]:
            if key in ref.state[q] and ref.state[q][key] is not None:
                _assert_close(opt.state[p][key], ref.state[q][key], dtype, f"step {k} param {i} {key}")
        if "step" in ref.state[q]:
            assert float(opt.state[p]["step"]) == float(ref.state[q]["step"])
    if dtype in (torch.float16, torch.bfloat16):  # keep rounding differences from compounding
        with torch.no_grad():
            for p, q in zip(ours, theirs):
                p.copy_(q)
                for key in STATE_KEYS[name]:
                    if ref.state[q].get(key) is not None:
                        opt.state[p][key].copy_(ref.state[q][key])


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64],
                         ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("name,kw", OPTIMIZERS, ids=lambda x: x if isinstance(x, str) else
                         ",".join(f"{k}={v}" for k, v in x.items()) or "default")
def test_parity_with_torch(name, kw, dtype, schedule):
    make_ours, make_theirs = SCHEDULES[schedule]
    lr = 0.05
    ours = _make_params(dtype)
    theirs = [p.clone() for p in ours]
    opt = getattr(lrfused, name)(_groups(ours, lr), lr=lr, **kw, schedule=make_ours())
    ref = _torch_optimizer(name, _groups(theirs, lr), lr, kw, dtype)
    sched = make_theirs(ref)
    for k, grads in enumerate(_grads(ours, STEPS)):
        for p, q, g in zip(ours, theirs, grads):
            p.grad = g.clone()
            q.grad = g.clone()
        expected_lrs = [group["lr"] for group in ref.param_groups]
        opt.step()
        ref.step()
        sched.step()
        assert opt.get_last_lr() == pytest.approx(expected_lrs, rel=1e-12, abs=0.0)
        _compare_and_resync(opt, ref, ours, theirs, name, dtype, k)


@pytest.mark.parametrize("param_dtype,state_dtype", [(torch.float16, torch.float32), (torch.bfloat16, torch.float32),
                                                     (torch.float32, torch.bfloat16)],
                         ids=lambda d: str(d).split(".")[-1])
def test_mixed_state_dtype(param_dtype, state_dtype):
    """fp32 state for 16-bit params (and bf16 state for fp32 params): the kernel computes in fp32 and
    rounds each tensor once to its own dtype. Each step is checked from lrfused's own previous values
    against the same update written with torch ops in fp32."""
    lr, beta1, beta2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.1
    ours = _make_params(param_dtype, sizes=[(4097,), (3,), (65537,)])
    opt = lrfused.AdamW(ours, lr=lr, weight_decay=wd, state_dtype=state_dtype)
    for k, grads in enumerate(_grads(ours, 4)):
        t = k + 1
        before = [p.detach().float().clone() for p in ours]
        m0 = [opt.state[p]["exp_avg"].float().clone() if k else torch.zeros_like(b) for p, b in zip(ours, before)]
        v0 = [opt.state[p]["exp_avg_sq"].float().clone() if k else torch.zeros_like(b) for p, b in zip(ours, before)]
        for p, g in zip(ours, grads):
            p.grad = g.clone()
        opt.step()
        for i, (p, g) in enumerate(zip(ours, grads)):
            gf = g.float()
            m = m0[i].lerp(gf, 1 - beta1)
            v = v0[i] * beta2 + (1 - beta2) * gf * gf
            denom = v.sqrt() / math.sqrt(1 - beta2 ** t) + eps
            expected = before[i] * (1 - lr * wd) - (lr / (1 - beta1 ** t)) * m / denom
            assert opt.state[p]["exp_avg"].dtype == state_dtype
            assert opt.state[p]["exp_avg_sq"].dtype == state_dtype
            torch.testing.assert_close(p.detach(), expected.to(param_dtype), rtol=TOL[param_dtype][0],
                                       atol=TOL[param_dtype][1])
            torch.testing.assert_close(opt.state[p]["exp_avg"], m.to(state_dtype), rtol=TOL[state_dtype][0],
                                       atol=TOL[state_dtype][1])
            torch.testing.assert_close(opt.state[p]["exp_avg_sq"], v.to(state_dtype), rtol=TOL[state_dtype][0],
                                       atol=TOL[state_dtype][1])


def test_sgd_momentum_cycling_matches_torch():
    """CyclicLR with cycle_momentum=True sets SGD's momentum per step exactly as torch's scheduler."""
    kw = dict(base_lr=0.01, max_lr=0.1, step_size_up=3, mode="triangular2", cycle_momentum=True,
              base_momentum=0.8, max_momentum=0.95)
    ours = _make_params(torch.float64, sizes=[(257,), (5,)])
    theirs = [p.clone() for p in ours]
    opt = lrfused.SGD(ours, lr=0.01, momentum=0.9, schedule=S.CyclicLR(**kw))
    ref = torch.optim.SGD(theirs, lr=0.01, momentum=0.9, foreach=False)
    sched = torch.optim.lr_scheduler.CyclicLR(ref, **kw)
    for k, grads in enumerate(_grads(ours, 14)):
        for p, q, g in zip(ours, theirs, grads):
            p.grad = g.clone()
            q.grad = g.clone()
        expected = ref.param_groups[0]["lr"]
        opt.step()
        ref.step()
        sched.step()
        assert opt.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)
        for p, q in zip(ours, theirs):
            _assert_close(p, q, torch.float64, f"step {k}")


def test_misaligned_and_strided_params():
    """A param whose storage starts 4 bytes past an allocation (scalar path) and a strided slice
    (staged through a contiguous copy) update exactly like torch's."""
    storage = torch.randn(5000, device=DEV)
    big = torch.randn(64, 130, device=DEV)
    ours = [torch.nn.Parameter(storage[1:4098]),  # data_ptr % 16 == 4
            torch.nn.Parameter(big[:, ::2])]       # not dense
    assert ours[0].data_ptr() % 16 != 0
    assert not ours[1].is_contiguous()
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    opt = lrfused.Adam(ours, lr=1e-2, weight_decay=1e-3)
    ref = torch.optim.Adam(theirs, lr=1e-2, weight_decay=1e-3, foreach=False)
    for k, grads in enumerate(_grads(ours, 5)):
        for p, q, g in zip(ours, theirs, grads):
            p.grad = g.clone()
            q.grad = g.clone()
        opt.step()
        ref.step()
        for p, q in zip(ours, theirs):
            _assert_close(p.detach(), q.detach(), torch.float32, f"step {k}")
    # the views still alias their storage
    torch.testing.assert_close(storage[1:4098], ours[0].detach())
    torch.testing.assert_close(big[:, ::2], ours[1].detach())


def test_many_small_tensors():
    """Thousands of tiny tensors: several launches of the argument tables, identical to torch."""
    sizes = [((i * 37) % 300 + 1,) for i in range(3000)]
    ours = _make_params(torch.float32, sizes=sizes)
    theirs = [p.clone() for p in ours]
    opt = lrfused.AdamW(ours, lr=1e-3, schedule=S.CosineAnnealingLR(T_max=10))
    ref = torch.optim.AdamW(theirs, lr=1e-3, fused=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=10)
    for grads in _grads(ours, 3):
        for p, q, g in zip(ours, theirs, grads):
            p.grad = g
            q.grad = g.clone()
        opt.step()
        ref.step()
        sched.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, rtol=2e-6, atol=1e-7)


_SMALL_TABLES_SCRIPT = r"""
import torch, lrfused
sizes = [((i * 37) % 3000 + 1,) for i in range(700)] + [(300000,)]
g = torch.Generator().manual_seed(0)
ours = [torch.randn(s, generator=g).cuda() for s in sizes]
theirs = [p.clone() for p in ours]
opt = lrfused.SGD(ours, lr=0.1, momentum=0.9, nesterov=True)
ref = torch.optim.SGD(theirs, lr=0.1, momentum=0.9, nesterov=True, foreach=False)
for _ in range(3):
    for p, q in zip(ours, theirs):
        p.grad = torch.randn(p.shape, generator=g).cuda()
        q.grad = p.grad.clone()
    opt.step(); ref.step()
for p, q in zip(ours, theirs):
    torch.testing.assert_close(p, q, rtol=2e-6, atol=1e-7)
print("ok")
"""


def test_small_argument_tables():
    """LRFUSED_CUDA_SMALL_TABLES=1 forces the 4 KB kernel-argument tables (CUDA < 12.1 or old drivers)."""
    env = dict(os.environ, LRFUSED_CUDA_SMALL_TABLES="1")
    run = subprocess.run([sys.executable, "-c", _SMALL_TABLES_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("ok")


def test_cuda_graph_capture_and_replay():
    """opt.step() captured once in a CUDA graph and replayed: the schedule advances on the device, so
    each replay applies the next lr of torch's CosineAnnealingLR."""
    T = 9
    ours = _make_params(torch.float32, sizes=[(1000,), (65537,), (3,)])
    theirs = [p.clone() for p in ours]
    grads = _grads(ours, 1)[0]
    for p, q, g in zip(ours, theirs, grads):
        p.grad = g.clone()  # static gradient buffers, as in a captured training step
        q.grad = g.clone()
    opt = lrfused.AdamW(ours, lr=1e-2, schedule=S.CosineAnnealingLR(T_max=T))
    ref = torch.optim.AdamW(theirs, lr=1e-2, foreach=False)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, T_max=T)

    expected = []

    def ref_step():
        expected.append(ref.param_groups[0]["lr"])
        ref.step()
        sched.step()

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up (state initialisation) outside the capture
        opt.step()
    torch.cuda.current_stream().wait_stream(side)
    ref_step()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    seen = [opt.get_last_lr()[0]]
    for _ in range(2 * T):
        graph.replay()
        ref_step()
        seen.append(opt.get_last_lr()[0])
    torch.cuda.synchronize()
    assert seen == pytest.approx(expected, rel=1e-12)
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_grad_scaler_with_injected_infs():
    """GradScaler drives lrfused without a sync; a step skipped for found_inf advances neither the
    schedule nor bias correction (torch's fused Adam + a scheduler stepped only on applied steps)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).to(DEV)
    ref_model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8)).to(DEV)
    ref_model.load_state_dict(model.state_dict())
    opt = lrfused.Adam(model.parameters(), lr=1e-2, schedule=S.StepLR(step_size=2, gamma=0.5))
    ref = torch.optim.Adam(ref_model.parameters(), lr=1e-2, fused=True)
    sched = torch.optim.lr_scheduler.StepLR(ref, step_size=2, gamma=0.5)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 10)
    ref_scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 10)
    x = torch.randn(16, 32, device=DEV)
    inject = {2, 3, 7}
    for it in range(10):
        for m, o, s in ((model, opt, scaler), (ref_model, ref, ref_scaler)):
            o.zero_grad()
            loss = m(x).square().mean()
            s.scale(loss).backward()
            if it in inject:
                next(m.parameters()).grad.view(-1)[0] = float("inf")
            s.step(o)
            s.update()
        if it not in inject:
            sched.step()
        for p, q in zip(model.parameters(), ref_model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(opt.state[p]["step"], ref.state[q]["step"])
            if it not in inject:  # grads are left unscaled by an applied fused step
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6)
        assert scaler.get_scale() == ref_scaler.get_scale()
    applied = 10 - len(inject)
    assert opt.get_last_lr()[0] == pytest.approx(1e-2 * 0.5 ** ((applied - 1) // 2), rel=1e-12)


@pytest.mark.parametrize("direction", ["cuda_to_cpu", "cpu_to_cuda"])
def test_state_dict_moves_between_devices(direction):
    """A checkpoint saved on one device resumes on the other and continues bit for bit in fp64."""
    src_dev, dst_dev = ("cuda", "cpu") if direction == "cuda_to_cpu" else ("cpu", "cuda")
    sizes = [(129,), (7, 5)]
    gen = torch.Generator().manual_seed(3)
    init = [torch.randn(s, generator=gen, dtype=torch.float64) for s in sizes]
    grads = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in sizes] for _ in range(8)]

    def run(dev, steps, state=None, params=None):
        params = params if params is not None else [p.clone().to(dev) for p in init]
        opt = lrfused.AdamW(params, lr=1e-2, amsgrad=True, schedule=S.CosineAnnealingLR(T_max=6))
        if state is not None:
            opt.load_state_dict(state)
        for gs in steps:
            for p, g in zip(params, gs):
                p.grad = g.to(dev)
            opt.step()
        return params, opt

    straight, straight_opt = run(dst_dev, grads)
    first, opt = run(src_dev, grads[:4])
    resumed_params = [p.detach().to(dst_dev).clone() for p in first]
    resumed, resumed_opt = run(dst_dev, grads[4:], state=opt.state_dict(), params=resumed_params)
    for p, q in zip(resumed, straight):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    assert resumed_opt.get_last_lr() == pytest.approx(straight_opt.get_last_lr(), rel=1e-12)
    for p, q in zip(resumed, straight):
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"):
            assert resumed_opt.state[p][key].device.type == dst_dev.split(":")[0]
            torch.testing.assert_close(resumed_opt.state[p][key], straight_opt.state[q][key], rtol=1e-12,
                                       atol=1e-14)


def test_torch_state_loads_into_lrfused_on_cuda():
    params = _make_params(torch.float32, sizes=[(300,), (4, 4)])
    theirs = [p.clone() for p in params]
    ref = torch.optim.Adam(theirs, lr=1e-3, foreach=False)
    for gs in _grads(params, 3):
        for q, g in zip(theirs, gs):
            q.grad = g.clone()
        ref.step()
    ours = [q.detach().clone() for q in theirs]
    opt = lrfused.Adam(ours, lr=1e-3)
    opt.load_state_dict(ref.state_dict())
    for gs in _grads(params, 2, seed=9):
        for p, q, g in zip(ours, theirs, gs):
            p.grad = g.clone()
            q.grad = g.clone()
        opt.step()
        ref.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, rtol=2e-6, atol=1e-7)


def test_plateau_on_device_matches_torch():
    """ReduceLROnPlateau fed with 0-dim CUDA metrics (no sync) cuts the lr where torch's does."""
    kw = dict(mode="min", factor=0.5, patience=1, threshold=1e-3, cooldown=1, min_lr=1e-4)
    ours = _make_params(torch.float32, sizes=[(10,)])
    theirs = [p.clone() for p in ours]
    opt = lrfused.SGD(ours, lr=0.1, momentum=0.9, schedule=S.ReduceLROnPlateau(**kw))
    ref = torch.optim.SGD(theirs, lr=0.1, momentum=0.9, foreach=False)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(ref, **kw)
    metrics = [1.0, 0.9, 0.9, 0.95, 0.9, 0.91, 0.92, 0.5, 0.6, 0.7, 0.8, 0.9]
    for k, (metric, grads) in enumerate(zip(metrics, _grads(ours, len(metrics)))):
        for p, q, g in zip(ours, theirs, grads):
            p.grad = g.clone()
            q.grad = g.clone()
        expected = ref.param_groups[0]["lr"]
        opt.step()
        ref.step()
        assert opt.get_last_lr()[0] == pytest.approx(expected, rel=1e-12), k
        opt.report(torch.tensor(metric, device=DEV, dtype=torch.float32))
        sched.step(metric)
        for p, q in zip(ours, theirs):
            torch.testing.assert_close(p, q, rtol=2e-6, atol=1e-7)


def test_ops_opcheck_on_cuda():
    """torch.library.opcheck on the CUDA kernels with the exact arguments lrfused's optimizer passes."""
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.namespace == "lrfused":
                calls.append((func, torch.utils._pytree.tree_map(
                    lambda a: a.detach().clone() if isinstance(a, torch.Tensor) else a, (args, kwargs or {}))))
            return func(*args, **(kwargs or {}))

    params = _make_params(torch.float32, sizes=[(97,), (3, 5)])
    opt = lrfused.Adam(params, lr=1e-3, schedule=S.CosineAnnealingLR(T_max=4))
    for gs in _grads(params, 2):
        for p, g in zip(params, gs):
            p.grad = g
        with Record():
            opt.step()
    checked = set()
    for func, (args, kwargs) in calls:
        torch.library.opcheck(func, args, kwargs)
        checked.add(func.name())
    assert any("fused_step_" in name for name in checked)
    assert any("advance_" in name for name in checked)


def test_opcheck_with_grad_scale():
    from torch.utils._python_dispatch import TorchDispatchMode

    calls = []

    class Record(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.name() == "lrfused::fused_step_":
                calls.append((func, torch.utils._pytree.tree_map(
                    lambda a: a.detach().clone() if isinstance(a, torch.Tensor) else a, (args, kwargs or {}))))
            return func(*args, **(kwargs or {}))

    params = _make_params(torch.float32, sizes=[(97,)])
    opt = lrfused.Adam(params, lr=1e-3)
    params[0].grad = torch.randn_like(params[0])
    with Record():
        opt.step(grad_scale=torch.tensor(4.0, device=DEV), found_inf=torch.tensor(0.0, device=DEV))
    assert calls
    for func, (args, kwargs) in calls:
        torch.library.opcheck(func, args, kwargs)


def test_found_inf_skips_everything_on_the_op():
    """fused_step_ with found_inf set leaves params, grads, state and step counters untouched."""
    params = _make_params(torch.float32, sizes=[(4097,), (3,)])
    opt = lrfused.Adam(params, lr=1e-2)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    before = [p.detach().clone() for p in params]
    state_before = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
    lr_before = opt.get_last_lr()
    for p in params:
        p.grad = torch.full_like(p, 4.0)
    opt.step(grad_scale=torch.tensor(2.0, device=DEV), found_inf=torch.tensor(1.0, device=DEV))
    for p, b, sb in zip(params, before, state_before):
        assert torch.equal(p, b)
        assert torch.equal(p.grad, torch.full_like(p, 4.0))
        for k, v in sb.items():
            assert torch.equal(opt.state[p][k], v), k
    assert opt.get_last_lr() == lr_before


@pytest.mark.slow
def test_tensor_past_2_31_elements():
    """64-bit indexing: a single fp16 tensor of 2^31 + 4099 elements; elements past 2^31 checked
    against the closed form of two SGD-momentum steps."""
    n = (1 << 31) + 4099
    need = 3 * n * 2 + (1 << 30)
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        pytest.skip(f"needs {need / 2**30:.1f} GiB of free GPU memory, {free / 2**30:.1f} available")
    p = torch.nn.Parameter(torch.zeros(n, device=DEV, dtype=torch.float16))
    idx = torch.cat([torch.arange(0, 8), torch.arange((1 << 31) - 8, (1 << 31) + 8), torch.arange(n - 8, n)]).to(DEV)
    g = torch.empty(n, device=DEV, dtype=torch.float16)
    piece = 1 << 26
    for start in range(0, n, piece):  # g[i] = i % 7 - 3, filled in pieces to bound the temporaries
        end = min(n, start + piece)
        g[start:end] = (torch.arange(start, end, device=DEV) % 7 - 3).to(torch.float16)
    opt = lrfused.SGD([p], lr=0.5, momentum=0.5)
    p.grad = g
    opt.step()
    gi = g[idx].float()
    expected1 = -0.5 * gi
    torch.testing.assert_close(p.detach()[idx].float(), expected1)
    opt.step()
    buf = 0.5 * gi + gi
    torch.testing.assert_close(p.detach()[idx].float(), expected1 - 0.5 * buf)
    torch.testing.assert_close(opt.state[p]["momentum_buffer"][idx].float(), buf)
