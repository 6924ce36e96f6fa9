"""The memory options where a model changes under the optimizer: a new memory format after the first step
(masters and 8-bit codes follow the parameter's layout; a staged copy keeps its own dtype), checkpoints
from a model of another memory format, group options edited between steps (checked before any state is
converted, and a refused build leaves no plan to step with), and checkpoints whose groups would combine
options that do not go together."""
from __future__ import annotations

import io

import pytest
import torch

import lrfused
from optim_helpers import step_on_path




def _roundtrip(sd):
    buffer = io.BytesIO()
    torch.save(sd, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)


@pytest.mark.parametrize("op_path", [False, True], ids=["plan", "op"])
@pytest.mark.parametrize("options", [dict(master_weights=True, state_dtype=torch.float32),
                                     dict(state_dtype=torch.float32), dict(optim_bits=8),
                                     dict(optim_bits=8, master_weights=True)],
                         ids=["master", "fp32-state", "8bit", "8bit-master"])
def test_a_new_memory_format_after_the_first_step_is_followed(options, op_path):
    """model.to(memory_format=channels_last) after the first step changes nothing but the layout: the run
    equals the same run kept contiguous, bit for bit (8-bit state: its blocks are requantized in the new
    memory order once, so within that rounding), and masters and codes take the parameter's layout."""
    dtype = torch.bfloat16 if options.get("master_weights") or options.get("state_dtype") else torch.float32
    torch.manual_seed(0)
    init = torch.randn(8, 16, 8, 8).to(dtype)
    grads = [torch.randn(8, 16, 8, 8).to(dtype) for _ in range(4)]

    def run(switch):
        p = torch.nn.Parameter(init.clone())
        opt = lrfused.AdamW([p], lr=1e-2, **options)
        for step, g in enumerate(grads):
            if switch and step == 1:
                p.data = p.data.to(memory_format=torch.channels_last)
            p.grad = g.clone().to(memory_format=torch.channels_last) if switch and step >= 1 else g.clone()
            step_on_path(opt, op_path)
        return p, opt

    p, opt = run(True)
    q, ref = run(False)
    if options.get("optim_bits") == 8:
        torch.testing.assert_close(p.detach().float(), q.detach().float(), rtol=1e-2, atol=1e-2)
        assert opt.state[p]["exp_avg"].stride() == p.stride()
    else:
        assert torch.equal(p.detach(), q.detach())
    if options.get("master_weights"):
        master = opt.state[p]["master_param"]
        assert master.stride() == p.stride() and torch.equal(p.detach(), master.to(dtype))


def test_an_8bit_checkpoint_of_another_memory_format_widens_in_its_own_block_order():
    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(8, 16, 8, 8).to(memory_format=torch.channels_last))
    opt = lrfused.AdamW([p], lr=1e-2, optim_bits=8)
    p.grad = torch.randn_like(p)
    opt.step()
    from lrfused.optim.quantized import dequantize_like

    exact = dequantize_like(opt.state[p]["exp_avg"], opt.state[p]["exp_avg_absmax"], opt.state[p]["exp_avg"], True,
                            torch.float32)
    q = torch.nn.Parameter(p.detach().contiguous())
    full = lrfused.AdamW([q], lr=1e-2)
    full.load_state_dict(_roundtrip(opt.state_dict()))
    assert full.state[q]["exp_avg"].dtype == torch.float32
    assert torch.equal(full.state[q]["exp_avg"], exact)


def test_group_options_edited_between_steps_are_checked_before_state_changes():
    torch.manual_seed(2)
    p = torch.nn.Parameter(torch.randn(64, 64))
    opt = lrfused.Adam([p], lr=1e-2, amsgrad=True)
    p.grad = torch.randn_like(p)
    opt.step()
    before = {k: v.clone() for k, v in opt.state[p].items()}
    param_before = p.detach().clone()
    opt.param_groups[0]["optim_bits"] = 8
    with pytest.raises(ValueError, match="optim_bits=8 does not support amsgrad"):
        opt.step()
    assert all(torch.equal(opt.state[p][k], v) and opt.state[p][k].dtype == v.dtype for k, v in before.items())
    assert torch.equal(p.detach(), param_before)
    opt.param_groups[0]["optim_bits"] = 32
    opt.step()  # builds a new plan on the unchanged state: the state moves
    assert float(opt.state[p]["step"]) == 2.0 and not torch.equal(opt.state[p]["exp_avg"], before["exp_avg"])
    for bad, error in ((4, ValueError), ("yes", ValueError)):
        opt.param_groups[0]["optim_bits"] = bad
        with pytest.raises(error, match="optim_bits"):
            opt.step()
    opt.param_groups[0]["optim_bits"] = 32
    opt.param_groups[0]["master_weights"] = "yes"
    with pytest.raises(TypeError, match="master_weights"):
        opt.step()


def test_changing_optim_bits_between_steps_converts_the_state():
    torch.manual_seed(3)
    p = torch.nn.Parameter(torch.randn(64, 64))
    opt = lrfused.AdamW([p], lr=1e-2)
    p.grad = torch.randn_like(p)
    opt.step()
    fp32 = opt.state[p]["exp_avg"].clone()
    opt.param_groups[0]["optim_bits"] = 8
    p.grad = torch.zeros_like(p)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == torch.uint8
    opt.param_groups[0]["optim_bits"] = 32
    opt.step()
    widened = opt.state[p]["exp_avg"]
    assert widened.dtype == torch.float32 and "exp_avg_absmax" not in opt.state[p]
    # two zero-gradient steps scale exp_avg by beta1^2, up to the 8-bit rounding in between
    torch.testing.assert_close(widened, fp32 * 0.81, rtol=0.05, atol=0.01 * float(fp32.abs().max()))


def test_a_checkpoint_that_would_combine_amsgrad_with_8bit_state_is_refused_before_anything_changes():
    p = torch.nn.Parameter(torch.randn(64, 64))
    amsgrad = lrfused.AdamW([p], lr=1e-2, amsgrad=True)
    p.grad = torch.randn_like(p)
    amsgrad.step()
    eight = lrfused.AdamW([p], lr=1e-2, optim_bits=8)
    p.grad = torch.randn_like(p)
    eight.step()
    before = {k: v.clone() for k, v in eight.state[p].items()}
    with pytest.raises(ValueError, match="optim_bits=8 does not support amsgrad"):
        eight.load_state_dict(_roundtrip(amsgrad.state_dict()))
    assert not eight.param_groups[0]["amsgrad"]
    assert all(torch.equal(eight.state[p][k], v) for k, v in before.items())
