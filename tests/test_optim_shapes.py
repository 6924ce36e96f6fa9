"""Awkward sizes, layouts and parameter sets, each against torch.optim running live (on the CPU and, through
the `device` fixture, on a GPU where there is one)."""
import pytest
import torch

import lrfused
from lrfused.testing import TOLERANCE, assert_close

from optim_helpers import (
    SCHEDULES,
    assert_lr_close,
    compare_states,
    draw_grads,
    extra_state_keys,
    leaf_pair,
    lrf_state,
    make_values,
    resync_torch_from_lrfused,
    run_parity,
    set_grads,
    snapshot,
    tensor_state,
)

OPT_CASES = [
    ("SGD", {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.01}),
    ("AdamW", {"betas": (0.8, 0.95)}),
]
OPT_IDS = [c[0] for c in OPT_CASES]


@pytest.mark.parametrize("numel", [0, 1, 3, 97, 4097, 65537])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_sizes(numel, dtype, opt_name, options, device):
    # a second small tensor makes the group's work list hold more than one chunk source
    run_parity(opt_name, options, SCHEDULES["CosineAnnealingLR"], dtype=dtype, steps=6, shapes=((numel,), (5,)),
               device=device)


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_sizes_low_precision(opt_name, options, device):
    for numel in (1, 3, 97, 4097):
        run_parity(opt_name, options, SCHEDULES["CyclicLR"], dtype=torch.bfloat16, steps=4, shapes=((numel,), (2, 3)),
                   device=device)


# ------------------------------------------------------------------------------------------------
# non-contiguous parameters
# ------------------------------------------------------------------------------------------------

VIEWS = {
    "transposed": lambda b: b.t(),
    "strided-2d": lambda b: b[::2, 1::3],
    "column": lambda b: b[:, 5],
    "flat-step7": lambda b: b.view(-1)[1:-1:7],
    "permuted-3d": lambda b: b.view(4, 6, 25).permute(2, 0, 1)[3:17],
}


@pytest.mark.parametrize("view_name", list(VIEWS))
@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
@pytest.mark.parametrize("grad_layout", ["contiguous", "transposed-grad"])
def test_non_contiguous_params(view_name, opt_name, options, grad_layout, device):
    """A parameter that is a strided view of a bigger tensor: the view is updated as torch updates it
    and every element of the base outside the view is left bit-identical."""
    view = VIEWS[view_name]
    gen = torch.Generator().manual_seed(11)
    base0 = torch.randn(24, 25, dtype=torch.float64, generator=gen).to(device)
    base_a, base_b = base0.clone(), base0.clone()
    pa, pb = view(base_a), view(base_b)  # leaves (the bases do not require grad)
    assert not pa.is_contiguous() and pa.is_leaf
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    topt = torch_cls([pb], lr=0.05, foreach=False, **options)
    lopt = lrf_cls([pa], lr=0.05, **options)
    inside = torch.zeros(24, 25, dtype=torch.bool, device=device)
    view(inside).fill_(True)
    for k in range(8):
        g = torch.randn(pa.shape, dtype=torch.float64, generator=gen).to(device)
        if grad_layout == "transposed-grad" and g.dim() >= 2:
            g = g.transpose(0, 1).contiguous().transpose(0, 1)
        pa.grad = g.clone()
        pb.grad = g.clone()
        topt.step()
        lopt.step()
        compare_states(lopt, topt, [pa], [pb], torch.float64, f"{view_name} step {k}", extra_state_keys(opt_name))
        assert torch.equal(base_a[~inside], base0[~inside]), f"{view_name} step {k}: memory outside the view was written"
    assert not torch.equal(base_a[inside], base0[inside])


def test_params_that_are_views_of_one_buffer(device):
    """Several parameters carved out of one flat buffer (as FSDP/apex flatten them), disjoint; two of them
    start 4 bytes past a 16-byte boundary (no vector loads from their first element)."""
    gen = torch.Generator().manual_seed(12)
    flat0 = torch.randn(1000, dtype=torch.float32, generator=gen).to(device)
    fa, fb = flat0.clone(), flat0.clone()
    cuts = [(0, 300, (30, 10)), (300, 301, (1,)), (301, 701, (20, 20)), (701, 1000, (299,))]
    pa = [fa[i:j].view(s) for i, j, s in cuts]
    pb = [fb[i:j].view(s) for i, j, s in cuts]
    assert [p.data_ptr() % 16 for p in pa] == [0, 0, 4, 4]
    topt = torch.optim.AdamW(pb, lr=0.01, foreach=False)
    lopt = lrfused.AdamW(pa, lr=0.01)
    for k in range(20):
        set_grads(pa, pb, [g.to(device) for g in draw_grads(pa, gen, torch.float32)])
        topt.step()
        lopt.step()
        compare_states(lopt, topt, pa, pb, torch.float32, f"views of one buffer step {k}")
    torch.testing.assert_close(fa, fb, rtol=TOLERANCE[torch.float32], atol=TOLERANCE[torch.float32])


# ------------------------------------------------------------------------------------------------
# many tiny tensors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_five_thousand_tiny_tensors(opt_name, options, device):
    gen = torch.Generator().manual_seed(13)
    shapes = [(1 + i % 4,) if i % 3 else (1, 1 + i % 2) for i in range(5000)]
    pa, pb = leaf_pair([v.to(device) for v in make_values(shapes, torch.float64, gen)])
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    topt = torch_cls(pb, lr=0.05, foreach=False, **options)
    sched = SCHEDULES["OneCycleLR"]
    tsched = sched.build_torch(topt, 4)
    lopt = lrf_cls(pa, lr=0.05, schedule=sched.build_lrf(4), **options)
    flat = lambda ts: torch.cat([t.detach().reshape(-1) for t in ts])
    for k in range(4):
        set_grads(pa, pb, [g.to(device) for g in draw_grads(pa, gen, torch.float64)])
        topt.step()
        tsched.step()
        lopt.step()
        # one comparison per state key over the concatenation of all 5000 tensors
        assert_close(flat(pa), flat(pb), key="param", what=f"5000 tensors step {k}")
        keys = [k_ for k_, v in topt.state[pb[0]].items() if isinstance(v, torch.Tensor)]
        assert keys
        for key in keys:
            a = [lrf_state(lopt, p)[key] for p in pa]
            b = [topt.state[p][key] for p in pb]
            if key == "step":
                assert all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b)), f"step differs at step {k}"
            else:
                assert_close(flat(a), flat(b), key=key, what=f"5000 tensors step {k}")


# ------------------------------------------------------------------------------------------------
# mixed dtypes in one group
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_mixed_dtypes_in_one_group(opt_name, options):
    """fp32, fp64 and bf16 parameters in a single group (one launch per (device, dtype) inside).
    Resynced every step because of the bf16 member; each dtype is held to its own tolerance."""
    gen = torch.Generator().manual_seed(14)
    dtypes = [torch.float32, torch.float64, torch.bfloat16, torch.float32, torch.bfloat16]
    values = [torch.randn(n, dtype=torch.float64, generator=gen).to(dt) for n, dt in zip((50, 7, 33, 1, 130), dtypes)]
    pa, pb = leaf_pair(values)
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    topt = torch_cls(pb, lr=0.05, foreach=False, **options)
    spec = SCHEDULES["ExponentialLR"]
    tsched = spec.build_torch(topt, 10)
    lopt = lrf_cls(pa, lr=0.05, schedule=spec.build_lrf(10), **options)
    for k in range(10):
        grads = [g.to(p.dtype) for g, p in zip(draw_grads(pa, gen, torch.bfloat16), pa)]
        set_grads(pa, pb, grads)
        if k:
            resync_torch_from_lrfused(lopt, topt, pa, pb)
        befores = snapshot(pb, topt, lambda o, p: o.state[p])
        topt.step()
        tsched.step()
        lopt.step()
        compare_states(lopt, topt, pa, pb, None, f"mixed dtypes step {k}", extra_state_keys(opt_name), befores)
        for p in pa:
            for key, v in tensor_state(lrf_state(lopt, p)).items():
                if key != "step":
                    assert v.dtype == p.dtype, f"{key} of a {p.dtype} param is {v.dtype}"


# ------------------------------------------------------------------------------------------------
# params without grad, add_param_group
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name,options", OPT_CASES + [("SGD", {})], ids=OPT_IDS + ["SGD-plain"])
def test_params_without_grad_are_skipped_as_torch_does(opt_name, options):
    """A parameter whose .grad is None is skipped: no state is created for it, its step does not advance,
    and nothing about it changes; when it gets a grad again it continues from its own state, as torch's."""
    gen = torch.Generator().manual_seed(15)
    pa, pb = leaf_pair(make_values([(20,), (6,), (3, 3)], torch.float64, gen))
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    topt = torch_cls(pb, lr=0.05, foreach=False, **options)
    spec = SCHEDULES["StepLR"]
    tsched = spec.build_torch(topt, 30)
    lopt = lrf_cls(pa, lr=0.05, schedule=spec.build_lrf(30), **options)
    # which params have a grad at each step: param 1 starts late, param 2 pauses in the middle
    has_grad = lambda k, i: not ((i == 1 and k < 4) or (i == 2 and 6 <= k < 11))
    for k in range(20):
        grads = draw_grads(pa, gen, torch.float64)
        for i, (a, b, g) in enumerate(zip(pa, pb, grads)):
            a.grad = g.clone() if has_grad(k, i) else None
            b.grad = g.clone() if has_grad(k, i) else None
        skipped = [i for i in range(3) if not has_grad(k, i)]
        snaps = {i: snapshot([pa[i]], lopt, lrf_state) for i in skipped}
        topt.step()
        tsched.step()
        lopt.step()
        for i in skipped:
            assert torch.equal(pa[i].detach(), snaps[i][0]["param"]), f"step {k}: skipped param {i} changed"
            st = tensor_state(lrf_state(lopt, pa[i]))
            assert set(st) == set(snaps[i][0]) - {"param"}, f"step {k}: skipped param {i} state keys changed"
            for key, v in st.items():
                assert torch.equal(v, snaps[i][0][key]), f"step {k}: skipped param {i} state {key} changed"
        if k < 4:
            assert not tensor_state(lrf_state(lopt, pa[1])), "state created for a param that never had a grad"
        compare_states(lopt, topt, pa, pb, torch.float64, f"{opt_name} partial grads step {k}", extra_state_keys(opt_name))


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_add_param_group_after_some_steps(opt_name, options):
    gen = torch.Generator().manual_seed(16)
    pa, pb = leaf_pair(make_values([(40,), (3,), (12,), (2, 5)], torch.float64, gen))
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    topt = torch_cls(pb[:2], lr=0.05, foreach=False, **options)
    lopt = lrf_cls(pa[:2], lr=0.05, **options)
    for k in range(12):
        if k == 5:
            extra = {"lr": 0.01, "weight_decay": 0.2}
            topt.add_param_group({"params": pb[2:], **extra})
            lopt.add_param_group({"params": pa[2:], **extra})
            assert len(lopt.param_groups) == 2
            for key in ("lr", "weight_decay") + tuple(options):
                assert lopt.param_groups[1][key] == topt.param_groups[1][key], key
        n = 2 if k < 5 else 4
        set_grads(pa[:n], pb[:n], draw_grads(pa[:n], gen, torch.float64))
        topt.step()
        lopt.step()
        compare_states(lopt, topt, pa[:n], pb[:n], torch.float64, f"add_param_group step {k}", extra_state_keys(opt_name))
        assert lopt.get_last_lr() == [g["lr"] for g in topt.param_groups]


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_steps_with_no_gradient_at_all_still_advance_the_schedule(opt_name, options):
    """The k-th call of step() applies lr_k (API.md), also when some calls had no gradient anywhere —
    as torch's loop opt.step(); sched.step() advances the scheduler after a no-op step."""
    gen = torch.Generator().manual_seed(17)
    pa, pb = leaf_pair(make_values([(20,), (4,)], torch.float64, gen))
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    topt = torch_cls(pb, lr=0.05, foreach=False, **options)
    spec = SCHEDULES["ExponentialLR"]
    tsched = spec.build_torch(topt, 20)
    lopt = lrf_cls(pa, lr=0.05, schedule=spec.build_lrf(20), **options)
    for k in range(20):
        applied = [g["lr"] for g in topt.param_groups]
        if k in (0, 1, 7, 8, 9):
            for p in pa + pb:
                p.grad = None
        else:
            set_grads(pa, pb, draw_grads(pa, gen, torch.float64))
        topt.step()
        tsched.step()
        lopt.step()
        compare_states(lopt, topt, pa, pb, torch.float64, f"no-grad steps, step {k}", extra_state_keys(opt_name))
        if k not in (0, 1, 7, 8, 9):
            assert_lr_close(lopt.get_last_lr(), applied, 0.05, f"no-grad steps, step {k}")
