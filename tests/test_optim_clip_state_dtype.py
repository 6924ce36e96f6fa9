"""Fused gradient clipping (max_grad_norm) and mixed-precision optimizer state (state_dtype), each
against torch running live: torch.nn.utils.clip_grad_norm_ + the torch optimizer, and torch's optimizer
with the same storage rounding applied between steps. The state_dtype tests take the `device` fixture (CPU,
and a GPU where there is one)."""
import math

import pytest
import torch

import lrfused
from lrfused import schedules as S

SHAPES = [(7,), (3, 5), (300,), (1,)]


def _pairs(dtype, gen, device="cpu"):
    values = [torch.randn(s, generator=gen, dtype=torch.float64).to(device, dtype) for s in SHAPES]
    return ([v.clone().requires_grad_() for v in values], [v.clone().requires_grad_() for v in values])


def _grads(params, gen, scale):
    return [torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.device, p.dtype) * scale for p in params]


@pytest.mark.parametrize("opt_name,kwargs", [
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=1e-2)),
    ("Adam", dict(lr=0.05, weight_decay=1e-2, amsgrad=True)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1)),
])
@pytest.mark.parametrize("dtype,rtol,atol", [(torch.float64, 1e-12, 1e-14), (torch.float32, 1e-5, 1e-6)])
def test_clipping_equals_clip_grad_norm_then_step(opt_name, kwargs, dtype, rtol, atol):
    gen = torch.Generator().manual_seed(3)
    mine, ref = _pairs(dtype, gen)
    max_norm = 1.5
    opt = getattr(lrfused, opt_name)(mine, **kwargs, max_grad_norm=max_norm, schedule=S.CosineAnnealingLR(T_max=12))
    topt = getattr(torch.optim, opt_name)(ref, **kwargs, foreach=False)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=12)
    for k in range(30):
        # alternate norms far above and below max_norm: clipped and unclipped steps
        for a, b, g in zip(mine, ref, _grads(mine, gen, 5.0 if k % 2 else 0.01)):
            a.grad = g.clone()
            b.grad = g.clone()
        expected_norm = torch.nn.utils.clip_grad_norm_(ref, max_norm)
        opt.step()
        topt.step()
        sched.step()
        assert opt.grad_norm is not None and opt.grad_norm.dim() == 0
        torch.testing.assert_close(opt.grad_norm.to(dtype), expected_norm, rtol=rtol, atol=atol)
        for a, b in zip(mine, ref):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=f"step {k}")
    for a, b in zip(mine, ref):
        for key, value in topt.state[b].items():
            torch.testing.assert_close(opt.state[a][key].to(value.dtype), value, rtol=rtol, atol=atol)


def test_clipping_leaves_gradients_unchanged():
    gen = torch.Generator().manual_seed(4)
    mine, _ = _pairs(torch.float64, gen)
    grads = _grads(mine, gen, 10.0)
    for p, g in zip(mine, grads):
        p.grad = g.clone()
    lrfused.AdamW(mine, lr=0.1, max_grad_norm=0.5).step()
    for p, g in zip(mine, grads):
        assert torch.equal(p.grad, g)


def test_clipping_with_grad_scaler_uses_unscaled_norm():
    """AMP: the norm is that of the unscaled gradients, as clip_grad_norm_ after scaler.unscale_."""
    gen = torch.Generator().manual_seed(5)
    mine, ref = _pairs(torch.float32, gen)
    opt = lrfused.AdamW(mine, lr=0.05, max_grad_norm=1.0)
    topt = torch.optim.AdamW(ref, lr=0.05, foreach=False)
    scaler, tscaler = torch.amp.GradScaler("cpu", init_scale=256.0), torch.amp.GradScaler("cpu", init_scale=256.0)
    for k in range(8):
        weights = _grads(mine, gen, 3.0)
        for params, s, o in ((mine, scaler, opt), (ref, tscaler, topt)):
            loss = sum((p * w).sum() for p, w in zip(params, weights))
            s.scale(loss).backward()
            if o is topt:
                s.unscale_(o)
                norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            s.step(o)
            s.update()
            o.zero_grad()
        torch.testing.assert_close(opt.grad_norm.float(), norm, rtol=1e-5, atol=1e-6)
        for a, b in zip(mine, ref):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"step {k}")


@pytest.mark.parametrize("bad,exc", [(0.0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
                                     (math.inf, ValueError), ("1", TypeError), (True, TypeError)])
def test_bad_max_grad_norm_is_rejected(bad, exc):
    with pytest.raises(exc, match="max_grad_norm"):
        lrfused.AdamW([torch.zeros(3, requires_grad=True)], max_grad_norm=bad)


def test_compiled_step_with_clipping_equals_eager():
    gen = torch.Generator().manual_seed(6)
    eager, compiled = _pairs(torch.float32, gen)
    opts = [lrfused.AdamW(ps, lr=0.05, max_grad_norm=0.7, schedule=S.LinearLR(0.2, 1.0, 5)) for ps in (eager, compiled)]
    step = torch.compile(opts[1].step, backend="aot_eager", fullgraph=True)
    for k in range(6):
        for a, b, g in zip(eager, compiled, _grads(eager, gen, 4.0)):
            a.grad = g.clone()
            b.grad = g.clone()
        opts[0].step()
        step()
        for a, b in zip(eager, compiled):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=f"step {k}")


# ---- state_dtype ------------------------------------------------------------------------------------

def _bf16_round(t):
    return t.to(torch.bfloat16).to(t.dtype)


@pytest.mark.parametrize("opt_name,kwargs", [("AdamW", dict(lr=0.01, weight_decay=0.1)),
                                             ("SGD", dict(lr=0.05, momentum=0.9))])
@pytest.mark.parametrize("param_dtype", [torch.bfloat16, torch.float16])
def test_fp32_state_for_16bit_params(opt_name, kwargs, param_dtype, device):
    """16-bit parameters with fp32 state equal torch's optimizer run on an fp32 copy whose parameters are
    rounded to the 16-bit dtype after every step (the state stays fp32)."""
    gen = torch.Generator().manual_seed(7)
    values = [torch.randn(s, generator=gen).to(device, param_dtype) for s in SHAPES]
    mine = [v.clone().requires_grad_() for v in values]
    ref = [v.float().requires_grad_() for v in values]
    opt = getattr(lrfused, opt_name)(mine, **kwargs, state_dtype=torch.float32, schedule=S.StepLR(4, 0.5))
    topt = getattr(torch.optim, opt_name)(ref, **kwargs, foreach=False)
    sched = torch.optim.lr_scheduler.StepLR(topt, 4, 0.5)
    for k in range(15):
        for a, b in zip(mine, ref):
            g = torch.randn(a.shape, generator=gen).to(device, param_dtype)
            a.grad = g.clone()
            b.grad = g.float()
        opt.step()
        topt.step()
        sched.step()
        with torch.no_grad():
            for b in ref:
                b.copy_(b.to(param_dtype).float())
        for a, b in zip(mine, ref):
            assert opt.state[a]["exp_avg" if opt_name == "AdamW" else "momentum_buffer"].dtype == torch.float32
            # one rounding of the same fp32 value: equal up to a tie, i.e. one 16-bit ulp
            torch.testing.assert_close(a.float(), b, rtol=torch.finfo(param_dtype).eps, atol=1e-6, msg=f"step {k}")
            for key, value in topt.state[b].items():
                if key != "step":
                    torch.testing.assert_close(opt.state[a][key], value, rtol=1e-5, atol=1e-6)


def test_bf16_state_for_fp32_params(device):
    """fp32 parameters with bf16 state equal torch's AdamW whose state is rounded to bf16 after every step."""
    gen = torch.Generator().manual_seed(8)
    mine, ref = _pairs(torch.float32, gen, device)
    opt = lrfused.AdamW(mine, lr=0.01, state_dtype=torch.bfloat16)
    topt = torch.optim.AdamW(ref, lr=0.01, foreach=False)
    for k in range(12):
        for a, b, g in zip(mine, ref, _grads(mine, gen, 1.0)):
            a.grad = g.clone()
            b.grad = g.clone()
        opt.step()
        topt.step()
        for b in ref:
            for key in ("exp_avg", "exp_avg_sq"):
                topt.state[b][key].copy_(_bf16_round(topt.state[b][key]))
        for a, b in zip(mine, ref):
            assert opt.state[a]["exp_avg"].dtype == torch.bfloat16
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=f"step {k}")
            for key in ("exp_avg", "exp_avg_sq"):
                # the same fp32 value rounded once to bf16: equal up to one bf16 ulp at a tie
                torch.testing.assert_close(opt.state[a][key].float(), topt.state[b][key],
                                           rtol=torch.finfo(torch.bfloat16).eps, atol=1e-30)


@pytest.mark.parametrize("param_dtype,state_dtype", [(torch.float64, torch.float32), (torch.float32, torch.float16),
                                                     (torch.bfloat16, torch.float16)])
def test_unsupported_state_dtype_pairs_are_rejected(param_dtype, state_dtype):
    with pytest.raises(ValueError, match="state_dtype"):
        lrfused.Adam([torch.zeros(3, dtype=param_dtype, requires_grad=True)], state_dtype=state_dtype)
