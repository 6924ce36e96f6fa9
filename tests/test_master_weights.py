"""master_weights=True: a float32 master copy of each bfloat16/float16 parameter lives in the optimizer state
("master_param"); the fused step reads it, updates it and stores both the master and the parameter rounded
to nearest, in the same pass (apex's and TransformerEngine's FusedAdam(master_weights=True)).

The oracle is their semantics run live: torch's optimizer (and scheduler) on float32 copies of the
parameters fed the 16-bit gradients; the master must match its parameters, and the 16-bit parameter
must be exactly the master rounded to nearest. Checkpoints carry the master (bit-exactly: torch's loader
would round it to the parameter's dtype), a torch checkpoint (no master) makes one from the parameters,
and an lrfused checkpoint with masters loads into an optimizer without them and back.
"""
from __future__ import annotations

import io

import pytest
import torch
from torch.optim import lr_scheduler as L

import lrfused
from lrfused import contract
from lrfused import schedules as S
from optim_helpers import step_on_path
from lrfused.testing import assert_close

CASES = {
    "sgd": (lrfused.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=1e-2)),
    "sgd-nesterov": (lrfused.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    "adam": (lrfused.Adam, torch.optim.Adam, dict(lr=1e-2, weight_decay=1e-2)),
    "adamw-amsgrad": (lrfused.AdamW, torch.optim.AdamW, dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
}
SHAPES = [(64, 33), (1000,), (7,), (1,)]




@pytest.mark.parametrize("op_path", [False, True], ids=["plan", "op"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("case", sorted(CASES))
def test_master_follows_float32_torch_and_the_parameter_is_its_rounding(case, dtype, op_path, device):
    ours_cls, torch_cls, kw = CASES[case]
    torch.manual_seed(0)
    init = [torch.randn(*s).to(dtype) for s in SHAPES]
    ours = [torch.nn.Parameter(t.clone().to(device)) for t in init]
    ref = [torch.nn.Parameter(t.float().to(device)) for t in init]
    opt = ours_cls(ours, master_weights=True, state_dtype=torch.float32,
                   schedule=S.OneCycleLR(max_lr=kw["lr"] * 4, total_steps=20), **kw)
    ref_opt = torch_cls(ref, foreach=False, **kw)
    sched = L.OneCycleLR(ref_opt, max_lr=kw["lr"] * 4, total_steps=20)
    for _ in range(12):
        for p, r in zip(ours, ref):
            g = torch.randn(p.shape).to(dtype).to(device)
            p.grad, r.grad = g, g.float()
        step_on_path(opt, op_path)
        ref_opt.step()
        sched.step()
        for p, r in zip(ours, ref):
            master = opt.state[p]["master_param"]
            assert master.dtype == torch.float32
            assert_close(master, r, what=case)
            assert torch.equal(p.detach(), master.to(dtype))
            for key, value in ref_opt.state[r].items():
                if key != "step":
                    assert_close(opt.state[p][key], value, key=key, what=case)


def test_mixed_dtypes_take_masters_only_where_they_apply():
    """bf16 weights and fp32 norms in one group: the fp32 parameter has no master and is updated exactly
    as torch's float32 AdamW updates it."""
    torch.manual_seed(1)
    w = torch.nn.Parameter(torch.randn(32, 16).bfloat16())
    norm = torch.nn.Parameter(torch.randn(16))
    ref_norm = torch.nn.Parameter(norm.detach().clone())
    opt = lrfused.AdamW([w, norm], lr=1e-2, master_weights=True)
    ref_opt = torch.optim.AdamW([ref_norm], lr=1e-2, foreach=False)
    for _ in range(5):
        w.grad = torch.randn_like(w)
        norm.grad = torch.randn_like(norm)
        ref_norm.grad = norm.grad.clone()
        opt.step()
        ref_opt.step()
    assert "master_param" in opt.state[w] and "master_param" not in opt.state[norm]
    assert_close(norm, ref_norm)
    assert torch.equal(w.detach(), opt.state[w]["master_param"].bfloat16())


def test_small_updates_accumulate_in_the_master():
    """Updates far below a bf16 ulp move the master (and, once they add up to half an ulp, the parameter),
    where plain bf16 parameters never move."""
    def run(master):
        p = torch.nn.Parameter(torch.ones(100, dtype=torch.bfloat16))
        opt = lrfused.SGD([p], lr=1.0, master_weights=master)
        for _ in range(100):
            p.grad = torch.full_like(p, -2.0 ** -12)  # 1/32 of an ulp at 1
            opt.step()
        return p.detach().float(), opt.state[p].get("master_param")

    p, master = run(True)
    assert torch.equal(master, torch.full((100,), 1.0 + 100 * 2.0 ** -12))
    assert torch.equal(p, master.bfloat16().float()) and bool((p > 1.0).all())
    plain, _ = run(False)
    assert torch.equal(plain, torch.ones(100))


def test_with_stochastic_rounding_the_parameter_rounds_to_nearest_and_bf16_state_stochastically():
    torch.manual_seed(2)
    p = torch.nn.Parameter(torch.randn(4096).bfloat16())
    opt = lrfused.SGD([p], lr=0.1, momentum=0.9, master_weights=True, stochastic_rounding=True)
    g = torch.randn(4096).bfloat16()
    p.grad = g
    opt.step()
    assert torch.equal(p.detach(), opt.state[p]["master_param"].bfloat16())
    assert opt.state[p]["momentum_buffer"].dtype == torch.bfloat16  # the state dtype is the parameter's


@pytest.mark.parametrize("op_path", [False, True], ids=["plan", "op"])
def test_compiled_step_matches_eager_bits(op_path):
    """torch.compile(fullgraph=True) over step() with masters and stochastic rounding stores the eager bits."""
    def make():
        torch.manual_seed(3)
        ps = [torch.nn.Parameter(torch.randn(*s).bfloat16()) for s in SHAPES]
        return ps, lrfused.AdamW(ps, lr=1e-2, master_weights=True, stochastic_rounding=True,
                                 stochastic_rounding_seed=5)

    grads = [[torch.randn(*s).bfloat16() for s in SHAPES] for _ in range(4)]
    eager_ps, eager = make()
    compiled_ps, compiled_opt = make()
    torch._dynamo.reset()
    step = torch.compile(compiled_opt.step, backend="aot_eager", fullgraph=True)
    for i, gs in enumerate(grads):
        for a, b, g in zip(eager_ps, compiled_ps, gs):
            a.grad, b.grad = g.clone(), g.clone()
        step_on_path(eager, op_path)
        if i == 0:
            compiled_opt.step()  # creates the state
        else:
            step()
    torch._dynamo.reset()
    for a, b in zip(eager_ps, compiled_ps):
        assert torch.equal(a, b)
        assert torch.equal(eager.state[a]["master_param"], compiled_opt.state[b]["master_param"])


# ---- checkpoints ---------------------------------------------------------------------------------------------
def _train(ps, opt, steps, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
        opt.step()


def _params(seed=4, dtype=torch.bfloat16):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s).to(dtype)) for s in SHAPES]


def _roundtrip(sd):
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)


def test_checkpoint_carries_the_master_bit_exactly_and_the_run_continues_identically():
    kw = dict(lr=1e-2, master_weights=True, state_dtype=torch.float32)
    ps = _params()
    opt = lrfused.AdamW(ps, **kw)
    _train(ps, opt, 10, seed=0)
    reference = [p.detach().clone() for p in ps]

    ps2 = _params()
    opt2 = lrfused.AdamW(ps2, **kw)
    _train(ps2, opt2, 4, seed=0)
    sd = _roundtrip(opt2.state_dict())
    assert all(s["master_param"].dtype == torch.float32 for s in sd["state"].values())
    ps3 = [torch.nn.Parameter(p.detach().clone()) for p in ps2]
    opt3 = lrfused.AdamW(ps3, **kw)
    opt3.load_state_dict(sd)
    for p2, p3 in zip(ps2, ps3):
        for key in ("master_param", "exp_avg", "exp_avg_sq"):
            assert opt3.state[p3][key].dtype == torch.float32
            assert torch.equal(opt3.state[p3][key], opt2.state[p2][key])
    # the rest of the same run (the generator restarted at step 4 of seed 0's stream)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        for p in ps3:
            torch.randn(p.shape, generator=gen)
    for _ in range(6):
        for p in ps3:
            p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
        opt3.step()
    for a, b in zip(ps3, reference):
        assert torch.equal(a, b)


@pytest.mark.parametrize("pair", sorted((pair for pair in contract.DTYPE_PAIRS if pair[1] in contract.STATE_DTYPES),
                                        key=str), ids=str)
def test_every_state_dtype_survives_a_checkpoint_bit_exactly(pair):
    """torch's load_state_dict casts floating-point state to the parameter's dtype; lrfused takes the
    checkpoint's own tensors, so float32 state of 16-bit parameters (and bf16 state of float32 ones) comes
    back exact, in the state dtype."""
    param_dtype, state_dtype = pair
    ps = _params(dtype=param_dtype)
    opt = lrfused.AdamW(ps, lr=1e-2, state_dtype=state_dtype)
    _train(ps, opt, 3, seed=1)
    sd = _roundtrip(opt.state_dict())
    opt2 = lrfused.AdamW(ps, lr=1e-2, state_dtype=state_dtype)
    opt2.load_state_dict(sd)
    for p in ps:
        for key in ("exp_avg", "exp_avg_sq"):
            assert opt2.state[p][key].dtype == state_dtype
            assert torch.equal(opt2.state[p][key], opt.state[p][key])
            assert opt2.state[p][key].data_ptr() != opt.state[p][key].data_ptr()


def test_torch_checkpoint_makes_masters_from_the_parameters_at_the_next_step():
    """The masters of a checkpoint without them are made at the first step after the load, from the
    parameters then: weights loaded into the model after the optimizer are the ones trained on."""
    ps = _params()
    torch_opt = torch.optim.AdamW(ps, lr=1e-2)
    _train(ps, torch_opt, 3, seed=2)
    opt = lrfused.AdamW(ps, lr=1e-2, master_weights=True, state_dtype=torch.float32)
    opt.load_state_dict(_roundtrip(torch_opt.state_dict()))
    for p in ps:
        assert "master_param" not in opt.state[p]
        assert torch.equal(opt.state[p]["exp_avg"], torch_opt.state[p]["exp_avg"].float())
    with torch.no_grad():  # the model's own checkpoint, loaded after the optimizer's
        for p in ps:
            p.fill_(0.5)
    ref = [torch.nn.Parameter(torch.full(p.shape, 0.5)) for p in ps]
    ref_opt = torch.optim.AdamW(ref, lr=1e-2, foreach=False)
    ref_opt.load_state_dict(_roundtrip(torch_opt.state_dict()))
    for st in ref_opt.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            st[key] = st[key].float()
    gen = torch.Generator().manual_seed(3)
    for p, r in zip(ps, ref):
        p.grad = torch.randn(p.shape, generator=gen).bfloat16()
        r.grad = p.grad.float()
    opt.step()
    ref_opt.step()
    for p, r in zip(ps, ref):
        assert_close(opt.state[p]["master_param"], r)
        assert torch.equal(p.detach(), opt.state[p]["master_param"].bfloat16())


def test_sync_master_weights_takes_changes_made_to_the_parameters():
    p = torch.nn.Parameter(torch.randn(64).bfloat16())
    opt = lrfused.SGD([p], lr=1e-3, master_weights=True)
    p.grad = torch.ones_like(p)
    opt.step()
    with torch.no_grad():
        p.clamp_(-0.01, 0.01)
    opt.sync_master_weights()
    opt.step()
    assert float(p.detach().float().abs().max()) <= 0.01 + 2e-3


def test_masters_load_into_an_optimizer_without_them_and_back():
    ps = _params()
    with_masters = lrfused.AdamW(ps, lr=1e-2, master_weights=True)
    _train(ps, with_masters, 3, seed=4)
    sd = _roundtrip(with_masters.state_dict())

    without = lrfused.AdamW(ps, lr=1e-2)
    without.load_state_dict(sd)
    assert all("master_param" not in without.state[p] for p in ps)
    assert not without.param_groups[0]["master_weights"]
    before = [p.detach().clone() for p in ps]
    without.param_groups[0]["lr"] = 0.5  # steps of many bf16 ulps: every element moves
    _train(ps, without, 1, seed=5)
    changed = sum(int((p != b).sum()) for p, b in zip(ps, before))
    assert changed > 0.9 * sum(p.numel() for p in ps)
    assert all("master_param" not in without.state[p] for p in ps)

    again = lrfused.AdamW(ps, lr=1e-2, master_weights=True)
    again.load_state_dict(_roundtrip(without.state_dict()))
    assert all("master_param" not in again.state[p] for p in ps)  # made from the parameters at the next step
    before = [p.detach().float() for p in ps]
    _train(ps, again, 1, seed=6)
    for p, b in zip(ps, before):
        master = again.state[p]["master_param"]
        assert torch.equal(p.detach(), master.bfloat16())
        # one AdamW step (at the checkpoint's lr, 0.5) from the parameter, not from the masters dropped before
        assert float((master - b).abs().max()) <= 0.75


# ---- refusals ------------------------------------------------------------------------------------------------
def _snapshot(opt, ps):
    return ([p.detach().clone() for p in ps], str(opt.state_dict()["param_groups"]), len(opt.state))


@pytest.mark.parametrize("option", ["master_weights", "stochastic_rounding"])
def test_an_option_that_applies_to_nothing_is_refused_naming_it(option):
    with pytest.raises(ValueError, match=option):
        lrfused.AdamW([torch.nn.Parameter(torch.randn(3))], **{option: True})
    with pytest.raises(ValueError, match=option):
        lrfused.SGD([torch.nn.Parameter(torch.randn(3, dtype=torch.float64))], **{option: True})
    with pytest.raises(TypeError, match=option):
        lrfused.AdamW([torch.nn.Parameter(torch.randn(3).bfloat16())], **{option: 1})
    # one group where it applies is enough (bf16 weights and fp32 norms)
    lrfused.AdamW([{"params": [torch.nn.Parameter(torch.randn(3).bfloat16())]},
                   {"params": [torch.nn.Parameter(torch.randn(3))]}], **{option: True})


def test_stochastic_rounding_needs_bf16_values():
    with pytest.raises(ValueError, match="stochastic_rounding"):  # float16 rounds to nearest
        lrfused.AdamW([torch.nn.Parameter(torch.randn(3).half())], stochastic_rounding=True)
    with pytest.raises(ValueError, match="stochastic_rounding"):  # the masters hold the bf16 values' precision
        lrfused.AdamW([torch.nn.Parameter(torch.randn(3).bfloat16())], stochastic_rounding=True, master_weights=True,
                      state_dtype=torch.float32)
    lrfused.AdamW([torch.nn.Parameter(torch.randn(3))], stochastic_rounding=True, state_dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="stochastic_rounding_seed"):
        lrfused.SGD([torch.nn.Parameter(torch.randn(3).bfloat16())], stochastic_rounding_seed=1.5)
    with pytest.raises(ValueError, match="stochastic_rounding_seed"):
        lrfused.SGD([torch.nn.Parameter(torch.randn(3).bfloat16())], stochastic_rounding_seed=-1)


def test_add_param_group_asking_for_an_option_it_cannot_use_changes_nothing():
    ps = [torch.nn.Parameter(torch.randn(4).bfloat16())]
    opt = lrfused.AdamW(ps, lr=1e-2, master_weights=True)
    _train(ps, opt, 1, seed=7)
    before = _snapshot(opt, ps)
    with pytest.raises(ValueError, match="master_weights"):
        opt.add_param_group({"params": [torch.nn.Parameter(torch.randn(4))], "master_weights": True})
    after = _snapshot(opt, ps)
    assert all(torch.equal(a, b) for a, b in zip(after[0], before[0])) and after[1:] == before[1:]
    opt.add_param_group({"params": [torch.nn.Parameter(torch.randn(4))]})  # inherits it: fp32 left as it is
    assert len(opt.param_groups) == 2


def test_the_op_refuses_bad_masters_before_anything_changes():
    p = torch.randn(5)
    g = torch.randn(5)
    step = torch.zeros((), dtype=torch.float32)
    sched_state = torch.zeros(contract.SchedLayout(1).size, dtype=torch.float64)
    program = S.Constant().program()
    before = [t.clone() for t in (p, g, step, sched_state)]
    kw = dict(base_lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False,
              momentum_buffer_absmax=[])
    with pytest.raises(RuntimeError, match="master weights are for bfloat16 and float16"):
        torch.ops.lrfused.fused_sgd_([p], [g], [], [step], sched_state, program, 0, master_params=[p.clone()], **kw)
    pb, gb = p.bfloat16(), g.bfloat16()
    with pytest.raises(RuntimeError, match="master_params\\[0\\] must be a float32"):
        torch.ops.lrfused.fused_sgd_([pb], [gb], [], [step], sched_state, program, 0, master_params=[pb.clone()], **kw)
    with pytest.raises(RuntimeError, match="sr_streams"):
        torch.ops.lrfused.fused_sgd_([pb], [gb], [], [step], sched_state, program, 0, master_params=[],
                                     stochastic_rounding=True, **kw)
    for t, b in zip((p, g, step, sched_state), before):
        assert torch.equal(t, b)
