"""torch's scheduler convention for param_groups, live against torch: ``initial_lr`` holds the base, and
after the k-th ``step()`` a group's ``lr`` is torch's value after its k-th ``opt.step(); sched.step()`` (the
lr the next step applies) — a float on the CPU, a device tensor the kernels keep current on a GPU."""
import copy

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as L

import lrfused
from lrfused import schedules as S
from lrfused.testing import LR_RTOL

LR = 0.1
STEPS = 12
REL = LR_RTOL  # lrfused.testing's lr tolerance, relative part only (no LR_ATOL_PER_BASE): as tight as before

CASES = {
    "StepLR": (lambda o: L.StepLR(o, 3, 0.5), lambda: S.StepLR(3, 0.5)),
    "Cosine": (lambda o: L.CosineAnnealingLR(o, 10, 1e-3), lambda: S.CosineAnnealingLR(10, 1e-3)),
    "warmup-cosine": (lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, total_iters=3), L.CosineAnnealingLR(o, 9)], [3]),
                      lambda: S.SequentialLR([S.LinearLR(0.1, total_iters=3), S.CosineAnnealingLR(9)], [3])),
    "OneCycle": (lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=STEPS + 1),
                 lambda: S.OneCycleLR(max_lr=0.5, total_steps=STEPS + 1)),
    "Lambda": (lambda o: L.LambdaLR(o, lambda k: 1.0 / (k + 1)), lambda: S.LambdaLR(lambda k: 1.0 / (k + 1), 50)),
}


def _pair(make_torch, make_lrf, device="cpu", opt="SGD", **kw):
    torch.manual_seed(0)
    a = nn.Linear(4, 3).double().to(device)
    b = copy.deepcopy(a)
    kw = dict(kw, lr=LR)
    topt = getattr(torch.optim, opt)(b.parameters(), **kw)
    tsched = make_torch(topt)
    lopt = getattr(lrfused, opt)(a.parameters(), schedule=make_lrf(), **kw)
    return a, b, lopt, topt, tsched


def _grads(a, b, k):
    g = torch.Generator().manual_seed(k)
    for p, q in zip(a.parameters(), b.parameters()):
        grad = torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device)
        p.grad, q.grad = grad.clone(), grad.clone()


def _lr(group):
    return float(group["lr"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_lr_and_initial_lr_follow_torch(name):
    a, b, lopt, topt, tsched = _pair(*CASES[name], momentum=0.9)
    assert lopt.param_groups[0]["initial_lr"] == LR
    if name != "OneCycle":  # torch's OneCycleLR keeps max_lr / div_factor there; its base lr is unused
        assert topt.param_groups[0]["initial_lr"] == LR
    assert _lr(lopt.param_groups[0]) == pytest.approx(_lr(topt.param_groups[0]), rel=REL)
    for k in range(STEPS):
        _grads(a, b, k)
        lopt.step()
        topt.step()
        tsched.step()
        assert isinstance(lopt.param_groups[0]["lr"], float)
        assert _lr(lopt.param_groups[0]) == pytest.approx(_lr(topt.param_groups[0]), rel=REL), f"step {k}"
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_plateau_lr_follows_torch():
    metrics = [1.0, 0.9, 0.95, 0.97, 0.99, 0.8, 0.85, 0.86, 0.87]
    a, b, lopt, topt, tsched = _pair(lambda o: L.ReduceLROnPlateau(o, patience=1, factor=0.5),
                                     lambda: S.ReduceLROnPlateau(patience=1, factor=0.5))
    for k, m in enumerate(metrics):
        _grads(a, b, k)
        lopt.step()
        topt.step()
        lopt.report(m)
        tsched.step(m)
        assert _lr(lopt.param_groups[0]) == _lr(topt.param_groups[0]), f"step {k}"
    assert _lr(lopt.param_groups[0]) < LR


@pytest.mark.parametrize("name", ["StepLR", "Lambda"])
def test_a_write_to_lr_rescales_the_schedule_as_torch_chainable_schedulers_do(name):
    make_torch = {"StepLR": lambda o: L.StepLR(o, 3, 0.5),
                  "Lambda": lambda o: L.MultiplicativeLR(o, lambda k: 0.9)}[name]
    make_lrf = {"StepLR": lambda: S.StepLR(3, 0.5), "Lambda": lambda: S.MultiplicativeLR(lambda k: 0.9, 50)}[name]
    a, b, lopt, topt, tsched = _pair(make_torch, make_lrf)
    for k in range(STEPS):
        if k == 4:
            for o in (lopt, topt):
                o.param_groups[0]["lr"] = o.param_groups[0]["lr"] * 0.25
        _grads(a, b, k)
        lopt.step()
        topt.step()
        tsched.step()
        assert _lr(lopt.param_groups[0]) == pytest.approx(_lr(topt.param_groups[0]), rel=REL), f"step {k}"
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_without_a_schedule_lr_is_simply_the_lr():
    p = nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = lrfused.SGD([p], lr=LR)
    p.grad = torch.ones_like(p)
    opt.step()
    assert opt.param_groups[0]["lr"] == LR and "initial_lr" not in opt.param_groups[0]


def test_checkpoints_keep_the_convention_both_ways():
    a, b, lopt, topt, tsched = _pair(*CASES["Cosine"], opt="Adam")
    for k in range(5):
        _grads(a, b, k)
        lopt.step()
        topt.step()
        tsched.step()
    sd = copy.deepcopy(lopt.state_dict())
    assert sd["param_groups"][0]["initial_lr"] == LR
    assert sd["param_groups"][0]["lr"] == pytest.approx(_lr(topt.param_groups[0]), rel=REL)
    # lrfused -> lrfused, and torch (with its scheduler) -> lrfused: both continue as torch does
    for source in (sd, copy.deepcopy(topt.state_dict())):
        c = copy.deepcopy(a)
        resumed = lrfused.Adam(c.parameters(), lr=LR, schedule=S.CosineAnnealingLR(10, 1e-3))
        resumed.load_state_dict(source)
        d, t2 = copy.deepcopy(b), None
        assert resumed.param_groups[0]["initial_lr"] == LR
        for k in range(5, 8):
            g = torch.Generator().manual_seed(k)
            for p in c.parameters():
                p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
            resumed.step()
            assert _lr(resumed.param_groups[0]) == pytest.approx(S.CosineAnnealingLR(10, 1e-3).lr_at(k + 1, LR),
                                                                 rel=REL)
        del d, t2


@pytest.mark.cuda
def test_gpu_groups_show_a_device_tensor_without_syncing():
    a, b, lopt, topt, tsched = _pair(*CASES["warmup-cosine"], device="cuda")
    _grads(a, b, 0)
    lopt.step()  # warm-up (creates state)
    topt.step()
    tsched.step()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for k in range(1, 6):
            _grads(a, b, k)
            lopt.step()
            topt.step()
            tsched.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    lr = lopt.param_groups[0]["lr"]
    assert isinstance(lr, torch.Tensor) and lr.device.type == "cuda" and lr.dim() == 0
    assert float(lr) == pytest.approx(_lr(topt.param_groups[0]), rel=1e-12)
    assert lopt.state_dict()["param_groups"][0]["lr"] == pytest.approx(float(lr))


def test_a_write_before_a_plateau_report_is_what_it_reduces_from():
    a, b, lopt, topt, tsched = _pair(lambda o: L.ReduceLROnPlateau(o, patience=0, factor=0.5),
                                     lambda: S.ReduceLROnPlateau(patience=0, factor=0.5))
    for k, m in enumerate([1.0, 2.0, 3.0, 4.0]):
        _grads(a, b, k)
        lopt.step()
        topt.step()
        if k == 1:
            for o in (lopt, topt):
                o.param_groups[0]["lr"] = 0.06
        lopt.report(m)
        tsched.step(m)
        assert _lr(lopt.param_groups[0]) == _lr(topt.param_groups[0]), f"step {k}"
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


MOMENTUM_CASES = {
    "CyclicLR": (lambda o: L.CyclicLR(o, 0.01, 0.1, step_size_up=3), lambda: S.CyclicLR(0.01, 0.1, step_size_up=3)),
    "OneCycleLR": (lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=STEPS + 1),
                   lambda: S.OneCycleLR(max_lr=0.5, total_steps=STEPS + 1)),
}


@pytest.mark.parametrize("name", sorted(MOMENTUM_CASES))
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_cycled_momentum_shows_what_torch_leaves_in_the_group(name, opt):
    if opt == "Adam" and name == "CyclicLR":
        pytest.skip("torch's CyclicLR cycles SGD's momentum; with Adam it needs cycle_momentum=False")
    kw = dict(momentum=0.9) if opt == "SGD" else {}
    a, b, lopt, topt, tsched = _pair(*MOMENTUM_CASES[name], opt=opt, **kw)
    key = (lambda g: g["momentum"]) if opt == "SGD" else (lambda g: g["betas"][0])
    assert float(key(lopt.param_groups[0])) == pytest.approx(float(key(topt.param_groups[0])), rel=REL)
    for k in range(STEPS):
        _grads(a, b, k)
        lopt.step()
        topt.step()
        tsched.step()
        assert float(key(lopt.param_groups[0])) == pytest.approx(float(key(topt.param_groups[0])), rel=REL), k
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


def test_a_refused_step_leaves_an_lr_write_pending():
    """The write is absorbed into the schedule only by a step that goes ahead: a refused step (a sparse
    gradient here) changes nothing, and the next good step applies the written lr once."""
    p = nn.Parameter(torch.randn(4, dtype=torch.float64))
    opt = lrfused.SGD([p], lr=LR, schedule=S.StepLR(3, 0.5))
    p.grad = torch.ones_like(p)
    opt.step()
    opt.param_groups[0]["lr"] = 0.02
    p.grad = torch.ones_like(p).to_sparse()
    with pytest.raises(RuntimeError, match="sparse gradient"):
        opt.step()
    assert opt.param_groups[0]["initial_lr"] == LR
    p.grad = torch.ones_like(p)
    opt.step()
    assert opt.get_last_lr() == [pytest.approx(0.02, rel=REL)]
    assert opt.param_groups[0]["initial_lr"] == pytest.approx(0.02, rel=REL)  # base 0.1 x written 0.02 / shown 0.1


# Per-group list arguments: each group shows its own entry before the first step, as torch's scheduler
# leaves the groups when built (a host evaluation used group 0's entries for every group once).
PER_GROUP_LISTS = {
    "OneCycleLR": (lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, [1.0, 2.0], total_steps=10,
                                                                   base_momentum=[0.8, 0.7], max_momentum=[0.9, 0.95]),
                   lambda: S.OneCycleLR([1.0, 2.0], total_steps=10, base_momentum=[0.8, 0.7],
                                        max_momentum=[0.9, 0.95])),
    "CyclicLR": (lambda opt: torch.optim.lr_scheduler.CyclicLR(opt, [0.1, 0.2], [1.0, 3.0], 4,
                                                               base_momentum=[0.8, 0.7], max_momentum=[0.9, 0.95]),
                 lambda: S.CyclicLR([0.1, 0.2], [1.0, 3.0], 4, base_momentum=[0.8, 0.7], max_momentum=[0.9, 0.95])),
}


@pytest.mark.parametrize("name", sorted(PER_GROUP_LISTS))
def test_per_group_lists_show_each_groups_entry_before_the_first_step(name):
    make_torch, make_lrf = PER_GROUP_LISTS[name]
    ref = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))]} for _ in range(2)], lr=0.1, momentum=0.9)
    sched = make_torch(ref)
    opt = lrfused.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))]} for _ in range(2)], lr=0.1, momentum=0.9,
                      schedule=make_lrf())
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups]
    assert [g["momentum"] for g in opt.param_groups] == [g["momentum"] for g in ref.param_groups]
    assert opt.schedule_state.next_lrs == [g["lr"] for g in ref.param_groups]
    assert opt.get_last_lr() == sched.get_last_lr()


@pytest.mark.parametrize("name", sorted(PER_GROUP_LISTS))
def test_per_group_list_of_the_wrong_length_is_refused_before_anything_changes(name):
    _, make_lrf = PER_GROUP_LISTS[name]
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in range(3)]
    with pytest.raises(ValueError, match="must have the same length as optimizer.param_groups"):
        lrfused.SGD([{"params": [p]} for p in params], lr=0.1, momentum=0.9, schedule=make_lrf())
    opt = lrfused.SGD([{"params": [p]} for p in params[:2]], lr=0.1, momentum=0.9, schedule=make_lrf())
    before = copy.deepcopy(opt.param_groups)
    with pytest.raises(ValueError, match="must have the same length as optimizer.param_groups"):
        opt.add_param_group({"params": [params[2]]})
    assert len(opt.param_groups) == 2
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == \
        [{k: v for k, v in g.items() if k != "params"} for g in before]
