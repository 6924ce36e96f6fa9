"""optim_bits=8: Adam/AdamW's exp_avg (signed map) and exp_avg_sq (unsigned map) and SGD's momentum buffer
stored as uint8 codes with a float32 absmax per block of 256 elements (csrc/quant8.h), dequantized, updated
and requantized inside the one fused pass.

* the dynamic maps are bitsandbytes'/torchao's create_dynamic_map (torchao running live);
* quantization stores the nearest representable value of each element (a property over many blocks), and
  agrees with torchao's quantize_8bit_with_qmap;
* the fused step is exactly "torch's update on the dequantized state, then requantize" (a reference written
  here from torch's optimizer and the quantization), on both step paths;
* memory: about 2 bytes of state per parameter for AdamW instead of 8, measured;
* checkpoints: an 8-bit run resumes bit for bit; 8-bit state loads into a 32-bit optimizer and 32-bit
  (torch's) state into an 8-bit one;
* training: a small model reaches the loss of 32-bit state within a stated tolerance, side by side with
  torchao's AdamW8bit running live.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import lrfused
from lrfused import contract
from lrfused import schedules as S
from lrfused._ops import _C
from optim_helpers import step_on_path

BLOCK = contract.QUANT_BLOCK


def _torchao_quant():
    pytest.importorskip("torchao", reason="torchao is an oracle (pyproject extra oracles-no-deps)")
    from torchao.optim import quant_utils
    return quant_utils


# ---- the format ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_dynamic_maps_are_bitsandbytes_own(signed):
    """bitsandbytes' create_dynamic_map, running live: within two float32 ulps (see below)."""
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is an oracle (pyproject extra oracles-no-deps)")
    import bitsandbytes.functional as F

    ours = torch.tensor(contract.DYNAMIC_MAPS["signed" if signed else "unsigned"])
    theirs = F.create_dynamic_map(signed=signed).float()
    assert bool(((ours - theirs).abs() <= 2 * torch.finfo(torch.float32).eps * theirs.abs()).all())


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_dynamic_maps_are_bitsandbytes_and_torchaos(signed):
    """Within two float32 ulps of torchao's create_dynamic_map (bitsandbytes' function): torch builds it with
    a vectorized linspace whose float32 rounding depends on the CPU's vector width; lrfused evaluates the
    same formula in scalar float32 arithmetic, at compile time, once for the CPU and the GPU."""
    quant_utils = _torchao_quant()
    ours = torch.tensor(contract.DYNAMIC_MAPS["signed" if signed else "unsigned"])
    theirs = torch.tensor(quant_utils.create_dynamic_map(signed=signed), dtype=torch.float32)
    assert ours.shape == (256,) and bool((ours[1:] > ours[:-1]).all())
    assert ours[-1] == 1.0 and bool((ours == 0).any())
    ulp = torch.finfo(torch.float32).eps * theirs.abs()
    assert bool(((ours - theirs).abs() <= 2 * ulp).all())
    assert (ours == theirs).float().mean() > 0.8


def _blocks(seed, n_blocks):
    """Blocks of many shapes: normal, heavy-tailed, one outlier, tiny magnitudes, zeros, a partial block."""
    g = torch.Generator().manual_seed(seed)
    parts = [torch.randn(n_blocks * BLOCK, generator=g),
             torch.randn(BLOCK, generator=g) ** 5,
             torch.cat([torch.randn(BLOCK - 1, generator=g) * 1e-3, torch.tensor([50.0])]),
             torch.randn(BLOCK, generator=g) * 1e-20,
             torch.zeros(BLOCK),
             torch.randn(BLOCK // 3, generator=g)]
    return torch.cat(parts)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_quantization_stores_the_nearest_representable_value(signed):
    """Per block: absmax = max |x| (floored at 1e-12), and every element comes back as the value of the
    block's representable set (map * absmax) nearest to it, up to float32 rounding of the division."""
    x = _blocks(0, 64)
    if not signed:
        x = x.abs()
    codes, absmax = _C.quantize_blockwise(x, signed)
    back = _C.dequantize_blockwise(codes, absmax, signed)
    qmap = torch.tensor(contract.DYNAMIC_MAPS["signed" if signed else "unsigned"], dtype=torch.float64)
    n_blocks = -(-x.numel() // BLOCK)
    for b in range(n_blocks):
        block = x[b * BLOCK:(b + 1) * BLOCK].double()
        assert absmax[b].item() == max(block.abs().max().item(), 1e-12) or block.abs().max() < 1e-12
        representable = qmap * absmax[b].double()
        best = (block[:, None] - representable[None, :]).abs().min(dim=1).values
        got = (back[b * BLOCK:(b + 1) * BLOCK].double() - block).abs()
        assert bool((got <= best + 1e-6 * absmax[b].double()).all()), b
    # so the error of an element is at most half the widest gap of the map (or the distance from -1 to the
    # signed map's lowest entry, the same 0.0070), times its block's absmax
    scale = absmax.repeat_interleave(BLOCK)[:x.numel()].double()
    bound = 0.5 * (qmap[1:] - qmap[:-1]).max().item() * (1 + 1e-5)
    assert bool(((back - x).abs().double() <= bound * scale).all())


def test_quantization_agrees_with_torchao():
    quant_utils = _torchao_quant()
    x = torch.randn(256 * 200)
    for signed in (True, False):
        v = x if signed else x.abs()
        codes, absmax = _C.quantize_blockwise(v, signed)
        scaled, scale = quant_utils.scale_tensor(v, BLOCK)
        qmap = torch.tensor(quant_utils.create_dynamic_map(signed=signed), dtype=torch.float32)
        theirs = quant_utils.quantize_8bit_with_qmap(scaled, qmap)
        assert torch.equal(absmax, scale)
        # the maps differ in the last bit of a few entries: a code differs only at such a boundary
        assert (codes == theirs).float().mean() > 0.999


# ---- the fused step -------------------------------------------------------------------------------------------
def _round_trip(t, signed):
    """What an 8-bit state holds after a kernel stores t (the quantization's own C++, tested above)."""
    flat = t.detach().float().contiguous().view(-1)
    codes, absmax = _C.quantize_blockwise(flat, signed)
    return _C.dequantize_blockwise(codes, absmax, signed).view_as(t)


CASES = {
    "adamw": (lrfused.AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1),
              {"exp_avg": True, "exp_avg_sq": False}),
    "adam-l2": (lrfused.Adam, torch.optim.Adam, dict(lr=1e-2, weight_decay=0.05, betas=(0.8, 0.99)),
                {"exp_avg": True, "exp_avg_sq": False}),
    "sgd-nesterov": (lrfused.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True),
                     {"momentum_buffer": True}),
}


@pytest.mark.parametrize("op_path", [False, True], ids=["plan", "op"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_step_is_torchs_update_on_the_dequantized_state(case, op_path, device):
    """Reference: torch's optimizer (foreach=False) and scheduler on float32 copies, whose state is replaced
    after every step by what 8-bit storage keeps of it. The parameters match to float32 tolerance at every
    step, and the stored codes are exactly the quantization of the reference's updated state."""
    ours_cls, torch_cls, kw, keys = CASES[case]
    torch.manual_seed(0)
    shapes = [(64, 96), (5000,), (7, 3)]  # the last stays 32-bit (< 4096 elements)
    init = [torch.randn(*s) for s in shapes]
    ours = [torch.nn.Parameter(t.clone().to(device)) for t in init]
    ref = [torch.nn.Parameter(t.clone()) for t in init]
    opt = ours_cls(ours, optim_bits=8, schedule=S.CosineAnnealingLR(T_max=8), **kw)
    ref_opt = torch_cls(ref, foreach=False, **kw)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=8)
    for _ in range(8):
        for p, r in zip(ours, ref):
            g = torch.randn(p.shape)
            p.grad, r.grad = g.to(device), g.clone()
        step_on_path(opt, op_path)
        ref_opt.step()
        sched.step()
        for p, r in zip(ours, ref):
            quantized = p.numel() >= contract.MIN_QUANT_NUMEL
            for key, signed in keys.items():
                state = opt.state[p][key]
                if not quantized:
                    assert state.dtype == torch.float32 and key + "_absmax" not in opt.state[p]
                    torch.testing.assert_close(state.cpu(), ref_opt.state[r][key], rtol=1e-5, atol=1e-6)
                    continue
                assert state.dtype == torch.uint8
                codes, absmax = _C.quantize_blockwise(ref_opt.state[r][key].contiguous().view(-1), signed)
                same = (state.cpu().view(-1) == codes).float().mean().item()
                assert same > 0.999, (key, same)  # float32-level differences may cross a code boundary
                torch.testing.assert_close(opt.state[p][key + "_absmax"].cpu(), absmax, rtol=1e-5, atol=1e-30)
                ref_opt.state[r][key].copy_(_round_trip(ref_opt.state[r][key], signed))
            torch.testing.assert_close(p.detach().cpu(), r.detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_16bit_parameters_with_master_weights_and_8bit_state(dtype):
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(64, 128).to(dtype))
    opt = lrfused.AdamW([p], lr=1e-2, optim_bits=8, master_weights=True)
    for _ in range(3):
        p.grad = torch.randn_like(p)
        opt.step()
    st = opt.state[p]
    assert st["exp_avg"].dtype == torch.uint8 and st["master_param"].dtype == torch.float32
    assert torch.equal(p.detach(), st["master_param"].to(dtype))


def test_state_bytes_per_parameter():
    """AdamW: 2 bytes of codes + 4 / 256 bytes of absmax per parameter, against 8 bytes for 32-bit state."""
    params = [torch.nn.Parameter(torch.randn(256, 256)) for _ in range(3)]

    def state_bytes(opt):
        return sum(t.numel() * t.element_size() for st in opt.state.values() for k, t in st.items() if k != "step")

    full = lrfused.AdamW(params, lr=1e-3)
    eight = lrfused.AdamW(params, lr=1e-3, optim_bits=8)
    for p in params:
        p.grad = torch.randn_like(p)
    full.step()
    eight.step()
    n = sum(p.numel() for p in params)
    assert state_bytes(full) / n == 8.0
    assert state_bytes(eight) / n == pytest.approx(2.0 + 8.0 / BLOCK)


# ---- checkpoints -----------------------------------------------------------------------------------------------
def _roundtrip(sd):
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)


def _params(seed=2):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s)) for s in [(80, 64), (100,)]]


def _train(ps, opt, steps, gen):
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step()


def test_8bit_run_resumes_bit_for_bit():
    ps = _params()
    opt = lrfused.AdamW(ps, lr=1e-2, optim_bits=8)
    gen = torch.Generator().manual_seed(0)
    _train(ps, opt, 10, gen)
    reference = [p.detach().clone() for p in ps]

    ps2 = _params()
    opt2 = lrfused.AdamW(ps2, lr=1e-2, optim_bits=8)
    gen2 = torch.Generator().manual_seed(0)
    _train(ps2, opt2, 4, gen2)
    sd = _roundtrip(opt2.state_dict())
    assert sd["state"][0]["exp_avg"].dtype == torch.uint8 and sd["state"][0]["exp_avg_absmax"].dtype == torch.float32
    ps3 = [torch.nn.Parameter(p.detach().clone()) for p in ps2]
    opt3 = lrfused.AdamW(ps3, lr=1e-2, optim_bits=8)
    opt3.load_state_dict(sd)
    _train(ps3, opt3, 6, gen2)
    for a, b in zip(ps3, reference):
        assert torch.equal(a, b)


def test_8bit_state_loads_into_a_32bit_optimizer_and_back():
    ps = _params()
    eight = lrfused.AdamW(ps, lr=1e-2, optim_bits=8)
    _train(ps, eight, 3, torch.Generator().manual_seed(1))
    sd = _roundtrip(eight.state_dict())

    full = lrfused.AdamW(ps, lr=1e-2)
    full.load_state_dict(sd)
    big = ps[0]
    expected = _C.dequantize_blockwise(sd["state"][0]["exp_avg"].view(-1), sd["state"][0]["exp_avg_absmax"], True)
    assert full.state[big]["exp_avg"].dtype == torch.float32
    assert torch.equal(full.state[big]["exp_avg"].view(-1), expected)
    assert "exp_avg_absmax" not in full.state[big]
    _train(ps, full, 1, torch.Generator().manual_seed(2))

    back = lrfused.AdamW(ps, lr=1e-2, optim_bits=8)
    back.load_state_dict(_roundtrip(full.state_dict()))
    codes, absmax = _C.quantize_blockwise(full.state[big]["exp_avg"].contiguous().view(-1), True)
    assert torch.equal(back.state[big]["exp_avg"].view(-1), codes)
    assert torch.equal(back.state[big]["exp_avg_absmax"], absmax)
    _train(ps, back, 1, torch.Generator().manual_seed(3))


def test_torch_checkpoint_loads_into_8bit():
    ps = _params()
    torch_opt = torch.optim.AdamW(ps, lr=1e-2)
    _train(ps, torch_opt, 3, torch.Generator().manual_seed(4))
    opt = lrfused.AdamW(ps, lr=1e-2, optim_bits=8)
    opt.load_state_dict(_roundtrip(torch_opt.state_dict()))
    big = ps[0]
    assert opt.state[big]["exp_avg_sq"].dtype == torch.uint8
    back = _C.dequantize_blockwise(opt.state[big]["exp_avg_sq"].view(-1), opt.state[big]["exp_avg_sq_absmax"], False)
    ref = torch_opt.state[big]["exp_avg_sq"].view(-1)
    assert (back - ref).abs().max() <= 0.5 * ref.abs().max() * max(
        b - a for a, b in zip(contract.DYNAMIC_MAPS["unsigned"], contract.DYNAMIC_MAPS["unsigned"][1:]))
    _train(ps, opt, 2, torch.Generator().manual_seed(5))


def test_a_corrupt_8bit_checkpoint_is_refused_before_anything_changes():
    ps = _params()
    opt = lrfused.AdamW(ps, lr=1e-2, optim_bits=8)
    _train(ps, opt, 1, torch.Generator().manual_seed(6))
    sd = _roundtrip(opt.state_dict())
    del sd["state"][0]["exp_avg_absmax"]
    before = {k: v.clone() for k, v in opt.state[ps[0]].items()}
    with pytest.raises(ValueError, match="exp_avg_absmax"):
        opt.load_state_dict(sd)
    assert all(torch.equal(opt.state[ps[0]][k], v) for k, v in before.items())


# ---- refusals ----------------------------------------------------------------------------------------------------
def test_refusals_name_optim_bits():
    big = torch.nn.Parameter(torch.randn(64, 64))
    with pytest.raises(ValueError, match="optim_bits=8 does not support amsgrad"):
        lrfused.AdamW([big], optim_bits=8, amsgrad=True)
    with pytest.raises(ValueError, match="optim_bits must be 32 or 8"):
        lrfused.AdamW([big], optim_bits=4)
    with pytest.raises(ValueError, match="optim_bits=8 applies to"):
        lrfused.AdamW([torch.nn.Parameter(torch.randn(100))], optim_bits=8)  # too small for 8-bit state
    with pytest.raises(ValueError, match="optim_bits=8 applies to"):
        lrfused.SGD([torch.nn.Parameter(torch.randn(64, 64, dtype=torch.float64))], momentum=0.9, optim_bits=8)
    lrfused.AdamW([big, torch.nn.Parameter(torch.randn(3))], optim_bits=8)  # the small one stays 32-bit


def test_the_op_refuses_8bit_state_without_its_scales():
    p, g = torch.randn(5000), torch.randn(5000)
    codes = torch.zeros(5000, dtype=torch.uint8)
    step = torch.zeros((), dtype=torch.float32)
    sched_state = torch.zeros(contract.SchedLayout(1).size, dtype=torch.float64)
    before = [t.clone() for t in (p, codes, step, sched_state)]
    kw = dict(base_lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
              decoupled_weight_decay=True, master_params=[])
    with pytest.raises(RuntimeError, match="exp_avg_absmax must have one tensor per param"):
        torch.ops.lrfused.fused_adam_([p], [g], [codes], [codes.clone()], [], [step], sched_state,
                                      S.Constant().program(), 0, exp_avg_absmax=[], exp_avg_sq_absmax=[], **kw)
    with pytest.raises(RuntimeError, match="float32 tensor of 20 values"):
        torch.ops.lrfused.fused_adam_([p], [g], [codes], [codes.clone()], [], [step], sched_state,
                                      S.Constant().program(), 0, exp_avg_absmax=[torch.zeros(19)],
                                      exp_avg_sq_absmax=[torch.zeros(20)], **kw)
    for t, b in zip((p, codes, step, sched_state), before):
        assert torch.equal(t, b)


# ---- training, side by side with torchao ---------------------------------------------------------------------
def test_training_reaches_the_32bit_loss_side_by_side_with_torchao_and_bitsandbytes():
    """A 2-layer MLP regression, 150 AdamW steps on the same batches: 8-bit state ends within 10% of the
    32-bit state's loss, and within 10% of torchao's AdamW8bit and of bitsandbytes' AdamW8bit (running live,
    same model, data, lr; bitsandbytes where installed)."""
    pytest.importorskip("torchao", reason="torchao is an oracle (pyproject extra oracles-no-deps)")
    from torchao.optim import AdamW8bit

    torch.manual_seed(7)
    x = torch.randn(512, 64)
    teacher = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 64))
    y = teacher(x).detach()

    def train(make):
        torch.manual_seed(8)
        model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 64))
        opt = make(model.parameters())
        g = torch.Generator().manual_seed(9)
        for _ in range(150):
            idx = torch.randint(0, 512, (64,), generator=g)
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x[idx]), y[idx]).backward()
            opt.step()
        return torch.nn.functional.mse_loss(model(x), y).item()

    full = train(lambda ps: lrfused.AdamW(ps, lr=3e-3))
    ours = train(lambda ps: lrfused.AdamW(ps, lr=3e-3, optim_bits=8))
    theirs = train(lambda ps: AdamW8bit(ps, lr=3e-3))
    start = torch.nn.functional.mse_loss(torch.zeros_like(y), y).item()
    assert ours < 0.5 * start  # it learns
    assert abs(ours - full) < 0.1 * full
    assert abs(ours - theirs) < 0.1 * theirs
    try:
        import bitsandbytes as bnb
    except ImportError:
        return
    bits = train(lambda ps: bnb.optim.AdamW8bit(ps, lr=3e-3, weight_decay=1e-2))
    assert abs(ours - bits) < 0.1 * bits


# ---- CPU and GPU agree -------------------------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("family", ["SGD", "AdamW"])
def test_cuda_8bit_matches_cpu(family):
    torch.manual_seed(10)
    shapes = [(300, 70), (65536 + 300,), (4096,)]
    init = [torch.randn(*s) for s in shapes]
    grads = [[torch.randn(*s) for s in shapes] for _ in range(3)]
    cls = getattr(lrfused, family)
    kw = dict(lr=1e-2, momentum=0.9) if family == "SGD" else dict(lr=1e-2)
    out = {}
    for device in ("cpu", "cuda"):
        ps = [torch.nn.Parameter(t.clone().to(device)) for t in init]
        opt = cls(ps, optim_bits=8, **kw)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = g.to(device)
            opt.step()
        out[device] = (ps, opt)
    for (p, q) in zip(out["cpu"][0], out["cuda"][0]):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=1e-5, atol=1e-6)
        for key, value in out["cpu"][1].state[p].items():
            other = out["cuda"][1].state[q][key].cpu()
            if value.dtype == torch.uint8:
                assert (other != value).float().mean() < 1e-3  # float32-level differences at code boundaries
            else:
                torch.testing.assert_close(other, value, rtol=1e-5, atol=1e-6)
