"""The two-line switch from torch.optim: torch's constructor keywords and checks, tensor and numpy
hyperparameters, named parameters, Adam's decoupled_weight_decay through checkpoints both ways, and
tabulated schedules that refuse to run past their table. Compared with torch live."""
import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lrfused
from lrfused import schedules as S
from lrfused.testing import TOLERANCE

TOL = dict(rtol=TOLERANCE[torch.float64], atol=1e-14)  # atol tighter than TOLERANCE's 1e-12*scale: <= 7 steps, no schedule drift


def _params(seed=0, shapes=((30,), (4, 5))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]


def _run(opt_a, pa, opt_b, pb, steps=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p, q in zip(pa, pb):
            grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.grad, q.grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()
    for p, q in zip(pa, pb):
        torch.testing.assert_close(p.detach(), q.detach(), **TOL)


def _leaves(values):
    return [nn.Parameter(v.clone()) for v in values]


KEYWORDS = {
    "SGD": [dict(fused=True), dict(foreach=False), dict(foreach=True), dict(differentiable=False, fused=None)],
    "Adam": [dict(fused=True), dict(foreach=False), dict(capturable=True), dict(capturable=True, foreach=True)],
    "AdamW": [dict(fused=True), dict(foreach=False), dict(capturable=True, fused=False)],
}


@pytest.mark.parametrize("name", sorted(KEYWORDS))
def test_torch_keywords_are_accepted_and_change_nothing(name):
    extra = dict(momentum=0.9) if name == "SGD" else {}
    for kw in KEYWORDS[name]:
        values = _params()
        pa, pb = _leaves(values), _leaves(values)
        lopt = getattr(lrfused, name)(pa, lr=1e-2, **extra, **kw)
        # torch's capturable path wants GPU parameters; on the CPU its reference is the default path
        topt = getattr(torch.optim, name)(pb, lr=1e-2, **extra, **{k: v for k, v in kw.items() if k != "capturable"})
        for key, value in kw.items():
            assert lopt.param_groups[0][key] == value
            assert key == "capturable" or topt.param_groups[0][key] == value
        _run(lopt, pa, topt, pb)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_differentiable_is_refused_by_name(name):
    with pytest.raises(NotImplementedError, match="differentiable=True"):
        getattr(lrfused, name)(_leaves(_params()), lr=1e-2, differentiable=True)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_fused_and_foreach_together_are_refused_as_torch_does(name):
    with pytest.raises(RuntimeError, match="cannot be `True` together") as torch_error:
        getattr(torch.optim, name)(_leaves(_params()), lr=1e-2, fused=True, foreach=True)
    with pytest.raises(RuntimeError, match="cannot be `True` together") as ours:
        getattr(lrfused, name)(_leaves(_params()), lr=1e-2, fused=True, foreach=True)
    assert str(ours.value) == str(torch_error.value)


def test_sgd_has_no_capturable_keyword_as_in_torch():
    with pytest.raises(TypeError):
        torch.optim.SGD(_leaves(_params()), lr=0.1, capturable=True)
    with pytest.raises(TypeError):
        lrfused.SGD(_leaves(_params()), lr=0.1, capturable=True)


def test_adam_decoupled_weight_decay_is_adamw():
    values = _params()
    pa, pb, pc = _leaves(values), _leaves(values), _leaves(values)
    lopt = lrfused.Adam(pa, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
    topt = torch.optim.Adam(pb, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
    _run(lopt, pa, topt, pb)
    pd = _leaves(values)
    _run(lrfused.Adam(pc, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True), pc,
         torch.optim.AdamW(pd, lr=1e-2, weight_decay=0.1), pd)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_tensor_and_numpy_hyperparameters(name):
    # float64 tensors: torch computes with tensor betas in their dtype (float32 tensors round its bias
    # corrections to float32), lrfused in float64 from their value
    f64 = dict(dtype=torch.float64)
    for lr in (torch.tensor(1e-2, **f64), np.float64(1e-2), np.float32(0.25)):
        values = _params()
        pa, pb = _leaves(values), _leaves(values)
        kw = dict(momentum=0.9) if name == "SGD" else dict(betas=(torch.tensor(0.8, **f64), torch.tensor(0.99, **f64)))
        lopt = getattr(lrfused, name)(pa, lr=lr, **kw)
        # torch's SGD cannot assign a numpy float32 lr into its float64 math; it is the same number
        topt = getattr(torch.optim, name)(pb, lr=float(lr) if isinstance(lr, np.float32) else lr, **kw)
        _run(lopt, pa, topt, pb)


def test_tensor_lr_changed_in_place_is_followed():
    values = _params()
    pa, pb = _leaves(values), _leaves(values)
    la, lb = torch.tensor(1e-2, dtype=torch.float64), torch.tensor(1e-2, dtype=torch.float64)
    lopt, topt = lrfused.Adam(pa, lr=la), torch.optim.Adam(pb, lr=lb)
    _run(lopt, pa, topt, pb, steps=2)
    la.fill_(3e-3)
    lb.fill_(3e-3)
    _run(lopt, pa, topt, pb, steps=2, seed=2)


@pytest.mark.parametrize("bad,err", [(torch.tensor([1e-2, 2e-2]), ValueError), (torch.tensor(-1.0), ValueError),
                                     ("0.1", TypeError)])
def test_bad_tensor_lr_is_refused(bad, err):
    with pytest.raises(err):
        lrfused.Adam(_leaves(_params()), lr=bad)


def test_mixed_float_and_tensor_betas_are_refused_as_torch_does():
    for cls in (torch.optim.Adam, lrfused.Adam):
        with pytest.raises(ValueError, match="both floats or both Tensors"):
            cls(_leaves(_params()), betas=(0.9, torch.tensor(0.99)))


def test_named_parameters_keep_their_names():
    torch.manual_seed(0)
    a = nn.Linear(4, 3).double()
    b = copy.deepcopy(a)
    lopt = lrfused.AdamW(a.named_parameters(), lr=1e-2)
    topt = torch.optim.AdamW(b.named_parameters(), lr=1e-2)
    assert lopt.param_groups[0]["param_names"] == topt.param_groups[0]["param_names"] == ["weight", "bias"]
    _run(lopt, list(a.parameters()), topt, list(b.parameters()))
    lsd, tsd = lopt.state_dict(), topt.state_dict()
    assert lsd["param_groups"][0]["param_names"] == tsd["param_groups"][0]["param_names"]
    resumed = lrfused.AdamW(copy.deepcopy(a).named_parameters(), lr=1e-2)
    resumed.load_state_dict(tsd)
    assert resumed.param_groups[0]["param_names"] == ["weight", "bias"]


# ---- checkpoints keep their meaning --------------------------------------------------------------

def test_decoupled_weight_decay_round_trips_torch_to_lrfused_and_back():
    values = _params()
    pt, pl = _leaves(values), _leaves(values)
    topt = torch.optim.Adam(pt, lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True)
    lopt = lrfused.Adam(pl, lr=1e-2, weight_decay=0.1)  # L2 as constructed: the checkpoint decides
    _run(topt, pt, lopt, pl, steps=0)
    g = torch.Generator().manual_seed(5)
    for p in pt:
        p.grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
    topt.step()
    with torch.no_grad():
        for p, q in zip(pl, pt):
            p.copy_(q)
    lopt.load_state_dict(copy.deepcopy(topt.state_dict()))
    assert lopt.param_groups[0]["decoupled_weight_decay"] is True
    _run(lopt, pl, topt, pt, steps=3)  # continues with AdamW's math, as torch does
    back = torch.optim.Adam(_leaves(values), lr=1e-2)
    back.load_state_dict(copy.deepcopy({k: v for k, v in lopt.state_dict().items() if k != "lrfused"}))
    assert back.param_groups[0]["decoupled_weight_decay"] is True


def test_l2_checkpoint_into_adamw_is_refused_with_nothing_changed():
    values = _params()
    pt = _leaves(values)
    topt = torch.optim.Adam(pt, lr=1e-2, weight_decay=0.1)
    for p in pt:
        p.grad = torch.ones_like(p)
    topt.step()
    pl = _leaves(values)
    lopt = lrfused.AdamW(pl, lr=1e-2)
    before = copy.deepcopy(lopt.state_dict())
    with pytest.raises(ValueError, match="decoupled_weight_decay=False"):
        lopt.load_state_dict(topt.state_dict())
    assert lopt.state_dict()["param_groups"] == before["param_groups"]
    assert not lopt.state


# ---- no silent horizons ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: S.LambdaLR(lambda k: 0.9 ** k, total_steps=4),
                                  lambda: S.MultiplicativeLR(lambda k: 0.9, total_steps=4)],
                         ids=["LambdaLR", "MultiplicativeLR"])
def test_stepping_past_a_table_raises_with_nothing_changed(make):
    p = nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = lrfused.SGD([p], lr=0.1, schedule=make())
    for _ in range(4):
        p.grad = torch.ones_like(p)
        opt.step()
    before = p.detach().clone()
    with pytest.raises(ValueError, match="past the end of the schedule"):
        opt.step()
    assert torch.equal(p.detach(), before)
    assert opt.scheduler.last_epoch == 4


def test_from_torch_names_its_horizon():
    p = nn.Parameter(torch.randn(3))
    sched = torch.optim.lr_scheduler.LambdaLR(torch.optim.SGD([p], lr=0.1), lambda k: 1 / (k + 1))
    with pytest.warns(UserWarning, match="tabulated the LambdaLR lambda for 10000 steps"):
        s = S.from_torch(sched)
    assert s.max_step() == 9999
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = S.from_torch(sched, total_steps=50)
    assert s.max_step() == 49 and s.lr_at(49, 1.0) == 1 / 50


# ---- everything around the optimizer, with no lrfused schedule: torch drives lrfused as it drives torch --

def _twin_models():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    return a, copy.deepcopy(a)


def _train_twins(a, b, la, tb, steps, after_step=None):
    for k in range(steps):
        x = torch.randn(5, 4, generator=torch.Generator().manual_seed(k), dtype=torch.float64)
        for m, o in ((a, la), (b, tb)):
            o.zero_grad(set_to_none=True)
            m(x).square().mean().backward()
            o.step()
        if after_step:
            after_step(k)


def test_swalr_and_averaged_model_with_an_lrfused_optimizer():
    from torch.optim.swa_utils import SWALR, AveragedModel

    a, b = _twin_models()
    la, tb = lrfused.SGD(a.parameters(), lr=0.1, momentum=0.9), torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9)
    sa, sb = SWALR(la, swa_lr=0.02, anneal_epochs=3), SWALR(tb, swa_lr=0.02, anneal_epochs=3)
    avg_a, avg_b = AveragedModel(a), AveragedModel(b)

    def after(k):
        sa.step()
        sb.step()
        avg_a.update_parameters(a)
        avg_b.update_parameters(b)
        assert la.param_groups[0]["lr"] == tb.param_groups[0]["lr"]
    _train_twins(a, b, la, tb, 6, after)
    for p, q in zip(avg_a.parameters(), avg_b.parameters()):
        torch.testing.assert_close(p, q, **TOL)
    assert la.param_groups[0]["lr"] == pytest.approx(0.02)


def test_a_user_written_torch_lr_scheduler_drives_lrfused():
    class HalveEveryTwo(torch.optim.lr_scheduler.LRScheduler):
        def get_lr(self):
            return [base * 0.5 ** (self.last_epoch // 2) for base in self.base_lrs]

    a, b = _twin_models()
    la, tb = lrfused.Adam(a.parameters(), lr=0.05), torch.optim.Adam(b.parameters(), lr=0.05)
    sa, sb = HalveEveryTwo(la), HalveEveryTwo(tb)

    def after(k):
        sa.step()
        sb.step()
    _train_twins(a, b, la, tb, 7, after)
    assert sa.get_last_lr() == sb.get_last_lr()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, **TOL)


def test_optimizer_hooks_are_called_as_in_torch():
    calls = []
    a, _ = _twin_models()
    opt = lrfused.AdamW(a.parameters(), lr=1e-2, schedule=S.StepLR(2))
    handles = [opt.register_step_pre_hook(lambda o, args, kw: calls.append("pre")),
               opt.register_step_post_hook(lambda o, args, kw: calls.append("post")),
               opt.register_state_dict_pre_hook(lambda o: calls.append("sd-pre")),
               opt.register_state_dict_post_hook(lambda o, sd: calls.append("sd-post")),
               opt.register_load_state_dict_pre_hook(lambda o, sd: calls.append("load-pre")),
               opt.register_load_state_dict_post_hook(lambda o: calls.append("load-post"))]
    a(torch.randn(2, 4, dtype=torch.float64)).sum().backward()
    opt.step()
    opt.load_state_dict(opt.state_dict())
    assert calls == ["pre", "post", "sd-pre", "sd-post", "load-pre", "load-post"]
    for h in handles:
        h.remove()
    opt.step()
    assert len(calls) == 6
