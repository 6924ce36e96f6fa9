"""stochastic_rounding=True: bf16 stores of the fused step round stochastically.

* the bits: every stored bf16 value is the documented function of (seed, stream, step, buffer, element
  index) (csrc/update_math.h), recomputed here independently, on the plan path and the op path alike;
* unbiasedness: the mean of many stochastic roundings of one value converges to the value (bounds that
  fail for a biased rounding), where rounding to nearest loses updates below half an ulp;
* resume: a run interrupted by state_dict()/load_state_dict() (or a pickle) repeats bit for bit;
* torchao: its _AdamW(bf16_stochastic_round=True), running live, draws the same distribution (expected
  value and the frequency of rounding up, not the bits);
* on a GPU, the CUDA kernels store the same bits as the CPU kernels.
"""
from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch

import lrfused
from lrfused import schedules as S
from optim_helpers import step_on_path

M64 = (1 << 64) - 1


# ---- the generator, written again from its definition (csrc/update_math.h) --------------------------------
def _mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def _key(seed: int, stream: int, step: int, buffer: int) -> int:
    return _mix64(_mix64(_mix64(seed) ^ stream) ^ ((buffer << 32) | step))


def _mix32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64)
    x ^= x >> 16
    x = (x * 0x21F0AAAD) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x735A2D97) & 0xFFFFFFFF
    x ^= x >> 15
    return x


def _random16(key: int, n: int) -> np.ndarray:
    index = np.arange(n, dtype=np.uint64)
    lo = (index & 0xFFFFFFFF) ^ (key & 0xFFFFFFFF)
    hi = (index >> 32) ^ (key >> 32)
    return (_mix32((_mix32(lo) + hi) & 0xFFFFFFFF) >> 16).astype(np.uint32)


def _stochastic_bf16(x: torch.Tensor, rand: np.ndarray) -> torch.Tensor:
    u = x.float().contiguous().view(torch.int32).numpy().view(np.uint32).astype(np.uint64)
    bits = ((u + rand) >> 16).astype(np.uint16)
    return torch.from_numpy(bits.view(np.int16).copy()).view(torch.bfloat16).reshape(x.shape)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().cpu().contiguous().view(torch.int16)


# ---- the bits -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op_path", [False, True], ids=["plan", "op"])
def test_sgd_stores_the_documented_bits(op_path):
    """SGD without momentum: p_new = round_sr(p - lr * g) with the parameter's own stream (its index in
    the optimizer), the step count after the step and buffer 0."""
    torch.manual_seed(0)
    seed = 123456789
    params = [torch.nn.Parameter(torch.randn(n).bfloat16()) for n in (1000, 37, 4096)]
    opt = lrfused.SGD(params, lr=0.01, stochastic_rounding=True, stochastic_rounding_seed=seed)
    for step in (1, 2, 3):
        grads = [torch.randn_like(p) for p in params]
        expected_exact = [(p.detach().float() - 0.01 * g.float()) for p, g in zip(params, grads)]
        for p, g in zip(params, grads):
            p.grad = g
        step_on_path(opt, op_path)
        for stream, (p, exact) in enumerate(zip(params, expected_exact)):
            rand = _random16(_key(seed, stream, step, 0), exact.numel())
            assert torch.equal(_bits(p), _bits(_stochastic_bf16(exact, rand))), (step, stream)
            if exact.numel() >= 1000:  # and not what rounding to nearest stores
                assert (_bits(p) != _bits(exact.bfloat16())).float().mean() > 0.2


def test_bf16_state_of_fp32_params_rounds_with_its_own_stream():
    """SGD momentum buffer in bf16 for fp32 parameters: the buffer's first value (the gradient) is stored
    with buffer 1's stream; the fp32 parameter is exact."""
    torch.manual_seed(1)
    seed = 42
    p = torch.nn.Parameter(torch.randn(3000))
    opt = lrfused.SGD([p], lr=0.1, momentum=0.9, state_dtype=torch.bfloat16, stochastic_rounding=True,
                      stochastic_rounding_seed=seed)
    g = torch.randn(3000)
    p.grad = g.clone()
    before = p.detach().clone()
    opt.step()
    buf = opt.state[p]["momentum_buffer"]
    assert torch.equal(_bits(buf), _bits(_stochastic_bf16(g, _random16(_key(seed, 0, 1, 1), g.numel()))))
    # the fp32 update used the fp32 gradient (the buffer's first value is the gradient itself)
    torch.testing.assert_close(p.detach(), before - 0.1 * g, rtol=0, atol=0)


def test_streams_are_positions_not_call_order():
    """A parameter's bits do not depend on which other parameters have gradients this step (the op path's
    buckets skip those without) nor on the path."""
    torch.manual_seed(2)

    def run(op_path, with_grad):
        ps = [torch.nn.Parameter(torch.full((500,), 1.0, dtype=torch.bfloat16)) for _ in range(3)]
        opt = lrfused.AdamW(ps, lr=1e-3, stochastic_rounding=True, stochastic_rounding_seed=7)
        for i, p in enumerate(ps):
            if i in with_grad:
                p.grad = torch.full_like(p, 0.5)
        step_on_path(opt, op_path)
        return ps[2]

    reference = run(False, {0, 1, 2})
    for op_path in (False, True):
        assert torch.equal(_bits(run(op_path, {2})), _bits(reference))
        assert torch.equal(_bits(run(op_path, {1, 2})), _bits(reference))


def test_different_parameters_steps_and_seeds_draw_different_bits():
    values = torch.full((4096,), 1.0 + 2.0 ** -9)  # a quarter ulp above 1 in bf16: rounds up 1 time in 4
    keys = {_key(s, stream, step, b) for s in (0, 1) for stream in (0, 1) for step in (1, 2) for b in (0, 1)}
    patterns = {_bits(_stochastic_bf16(values, _random16(k, 4096))).numpy().tobytes() for k in keys}
    assert len(patterns) == len(keys)


# ---- unbiasedness ------------------------------------------------------------------------------------------
BF16_ULP_AT_1 = 2.0 ** -7


def _sgd_steps(n, delta, steps, stochastic, seed=0):
    p = torch.nn.Parameter(torch.ones(n, dtype=torch.bfloat16))
    opt = lrfused.SGD([p], lr=1.0, stochastic_rounding=stochastic, stochastic_rounding_seed=seed)
    for _ in range(steps):
        p.grad = torch.full_like(p, -delta)  # p += delta (delta is exact in bf16)
        opt.step()
    return p.detach().double()


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.9])
def test_one_rounding_is_unbiased(fraction):
    """1 + fraction * ulp: each element rounds up with probability `fraction`; the mean over n elements
    must lie within 5 standard errors of 1 + fraction * ulp (a rounding to nearest is off by
    min(fraction, 1 - fraction) ulp, hundreds of standard errors)."""
    n = 200_000
    delta = fraction * BF16_ULP_AT_1
    p = _sgd_steps(n, delta, 1, True)
    assert set(p.unique().tolist()) <= {1.0, 1.0 + BF16_ULP_AT_1}
    sigma = BF16_ULP_AT_1 * (fraction * (1 - fraction) / n) ** 0.5
    assert abs(p.mean().item() - (1.0 + delta)) < 5 * sigma
    nearest = _sgd_steps(n, delta, 1, False)
    assert abs(nearest.mean().item() - (1.0 + delta)) > 50 * sigma


def test_updates_below_half_an_ulp_accumulate():
    """100 updates of a tenth of an ulp: stochastic rounding gets the sum on average (within 5 standard
    errors of a bound that assumes independent steps), rounding to nearest never moves."""
    n, steps = 20_000, 100
    delta = 0.1 * BF16_ULP_AT_1
    p = _sgd_steps(n, delta, steps, True)
    expected = 1.0 + steps * delta
    # each step adds a rounding error of variance <= ulp^2 / 4 (the ulp grows past 2, here it never reaches it)
    sigma = BF16_ULP_AT_1 * 0.5 * (steps / n) ** 0.5
    assert abs(p.mean().item() - expected) < 5 * sigma
    assert torch.equal(_sgd_steps(n, delta, steps, False), torch.ones(n, dtype=torch.float64))


def test_the_bits_are_uniform():
    """The 16 bits the rounding draws: each of 64 bins of 2^10 values holds 1/64 of the draws, chi-square
    with 63 degrees of freedom below its 0.9999 quantile (about 115), over many keys and elements."""
    draws = np.concatenate([_random16(_key(3, stream, 1, 0), 1 << 14) for stream in range(16)])
    counts = np.bincount(draws >> 10, minlength=64)
    expected = draws.size / 64
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 115.0


# ---- resume ------------------------------------------------------------------------------------------------
def _model_and_data(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8)).bfloat16()
    data = [(torch.randn(16, 32).bfloat16(), torch.randn(16, 8).bfloat16()) for _ in range(12)]
    return model, data


def _train(model, opt, batches):
    for x, y in batches:
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x).float(), y.float()).backward()
        opt.step()


@pytest.mark.parametrize("how", ["state_dict", "pickle"])
def test_resume_repeats_bit_for_bit(how):
    kw = dict(lr=1e-2, stochastic_rounding=True, schedule=S.CosineAnnealingLR(T_max=12))
    model, data = _model_and_data()
    opt = lrfused.AdamW(model.parameters(), stochastic_rounding_seed=99, **kw)
    _train(model, opt, data)
    reference = [p.detach().clone() for p in model.parameters()]

    model2, _ = _model_and_data()
    opt2 = lrfused.AdamW(model2.parameters(), stochastic_rounding_seed=99, **kw)
    _train(model2, opt2, data[:5])
    model3 = copy.deepcopy(model2)
    if how == "state_dict":
        buffer = io.BytesIO()
        torch.save(opt2.state_dict(), buffer)
        # another seed at construction: the checkpoint's seed is the one that continues
        opt3 = lrfused.AdamW(model3.parameters(), stochastic_rounding_seed=1, **kw)
        opt3.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
    else:
        opt3 = pickle.loads(pickle.dumps(opt2))
        params3 = list(model3.parameters())
        for group in opt3.param_groups:  # the pickled optimizer holds its own copies of the parameters
            group["params"] = params3
        opt3.state = {params3[i]: s for i, s in enumerate(opt3.state.values())}
    _train(model3, opt3, data[5:])
    for a, b in zip(model3.parameters(), reference):
        assert torch.equal(_bits(a), _bits(b))


def test_the_seed_defaults_to_torchs_seed_without_drawing_from_its_generator():
    """A seeded run repeats (the default seed is torch.initial_seed()), and building an optimizer leaves
    torch's random numbers as building torch.optim's leaves them."""
    torch.manual_seed(5)
    a = lrfused.SGD([torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))], stochastic_rounding=True)
    after_lrfused = torch.rand(3)
    torch.manual_seed(5)
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))])
    assert torch.equal(torch.rand(3), after_lrfused)
    torch.manual_seed(5)
    b = lrfused.SGD([torch.nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))], stochastic_rounding=True)
    assert a.state_dict()["lrfused"]["sr_seed"] == b.state_dict()["lrfused"]["sr_seed"] == 5


# ---- torchao, live -----------------------------------------------------------------------------------------
def _torchao():
    pytest.importorskip("torchao", reason="torchao is an oracle (pyproject extra oracles-no-deps)")
    from torchao.optim import _AdamW
    return _AdamW


def test_adamw_matches_torchao_bf16_stochastic_round_in_expectation():
    """One AdamW step on bf16 parameters from the same state: torchao's _AdamW(bf16_stochastic_round=True)
    and lrfused's stochastic_rounding=True both store, per element, one of the two bf16 neighbours of the
    fp32 result (computed here by torch's AdamW in fp32), rounding up with probability equal to the
    fraction of the ulp; over 2^17 elements the frequencies agree with that probability and with each
    other within 5 standard errors, and the mean error is within 5 standard errors of 0."""
    _AdamW = _torchao()
    n = 1 << 17
    torch.manual_seed(3)
    init = (torch.rand(n) + 0.5).bfloat16()
    grad = torch.randn(n).bfloat16()
    kw = dict(lr=3e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)

    exact = torch.nn.Parameter(init.float())
    exact.grad = grad.float()
    torch.optim.AdamW([exact], foreach=False, **kw).step()
    exact = exact.detach()
    down = exact.bfloat16()  # nearest, then the neighbour below the exact value
    down = torch.where(down.float() > exact, torch.nextafter(down, torch.tensor(-1.0, dtype=torch.bfloat16)), down)
    up = torch.nextafter(down, torch.tensor(4.0, dtype=torch.bfloat16))
    ulp = up.float() - down.float()
    probability_up = ((exact - down.float()) / ulp).double()
    inexact = probability_up > 0

    results = {}
    for name in ("torchao", "lrfused"):
        p = torch.nn.Parameter(init.clone())
        p.grad = grad.clone()
        if name == "torchao":
            opt = _AdamW([p], bf16_stochastic_round=True, **kw)
        else:
            opt = lrfused.AdamW([p], stochastic_rounding=True, stochastic_rounding_seed=11, **kw)
        opt.step()
        stored = p.detach()
        assert bool(((stored == down) | (stored == up)).all()), name
        rounded_up = (stored == up) & inexact
        results[name] = rounded_up
        k = int(inexact.sum())
        expected = probability_up[inexact].sum().item()
        sigma = (probability_up[inexact] * (1 - probability_up[inexact])).sum().item() ** 0.5
        assert abs(rounded_up.sum().item() - expected) < 5 * sigma, name
        error = ((stored.float() - exact) / ulp).double()[inexact]
        assert abs(error.mean().item()) < 5 * (0.25 / k) ** 0.5, name
    a, b = results["torchao"].sum().item(), results["lrfused"].sum().item()
    assert abs(a - b) < 5 * (2 * (probability_up[inexact] * (1 - probability_up[inexact])).sum().item()) ** 0.5


def test_training_tracks_torchao_and_beats_nearest():
    """A small bf16 regression trained with a small lr: the loss of lrfused with stochastic rounding
    stays within 5% of torchao's _AdamW(bf16_stochastic_round=True) after 150 steps, and both end
    below plain bf16 AdamW, whose updates below half an ulp are lost."""
    _AdamW = _torchao()
    torch.manual_seed(4)
    w_true = torch.randn(64, 1)
    x = torch.randn(512, 64)
    y = x @ w_true

    def train(make):
        w = torch.nn.Parameter((torch.randn(64, 1) * 0.1 + 4.0).bfloat16())  # |w| ~ 4: ulp 2^-5
        opt = make([w])
        for _ in range(150):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss((x.bfloat16() @ w).float(), y)
            loss.backward()
            opt.step()
        return torch.nn.functional.mse_loss((x @ w.float()), y).item()

    kw = dict(lr=2e-3, weight_decay=0.0)
    ours = train(lambda ps: lrfused.AdamW(ps, stochastic_rounding=True, stochastic_rounding_seed=0, **kw))
    theirs = train(lambda ps: _AdamW(ps, bf16_stochastic_round=True, **kw))
    nearest = train(lambda ps: lrfused.AdamW(ps, **kw))
    assert abs(ours - theirs) < 0.05 * theirs
    assert ours < nearest and theirs < nearest


# ---- CPU and GPU store the same bits -------------------------------------------------------------------------
@pytest.mark.cuda
@pytest.mark.parametrize("family", ["SGD", "AdamW"])
def test_cuda_stores_the_cpu_bits(family):
    torch.manual_seed(6)
    shapes = [(1000,), (65536 + 77,), (3, 5), (1,)]
    init = [torch.randn(*s).bfloat16() for s in shapes]
    grads = [[torch.randn(*s).bfloat16() for s in shapes] for _ in range(3)]
    cls = getattr(lrfused, family)
    kw = dict(lr=1e-2, momentum=0.9) if family == "SGD" else dict(lr=1e-2)
    out = {}
    for device in ("cpu", "cuda"):
        ps = [torch.nn.Parameter(t.clone().to(device)) for t in init]
        opt = cls(ps, stochastic_rounding=True, stochastic_rounding_seed=2024, **kw)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = g.to(device)
            opt.step()
        out[device] = [_bits(p) for p in ps] + [_bits(s) for p in ps for k, s in opt.state[p].items()
                                                 if k != "step"]
    for a, b in zip(out["cpu"], out["cuda"]):
        assert torch.equal(a, b)
