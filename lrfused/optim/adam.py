"""Adam (L2 weight decay added to the gradient) and AdamW (decoupled weight decay): torch.optim.Adam's and
AdamW's math with the schedule fused into the update."""
from __future__ import annotations

import torch

from .. import contract
from .._ops import ops
from .base import _FusedOptimizer
from .checks import MASTER_KEY, _check_nonnegative, _is_number, _is_scalar_tensor


class Adam(_FusedOptimizer):
    """torch.optim.Adam's math (L2 weight decay added to the gradient) with the schedule fused in."""

    _FAMILY = "ADAM"
    _FLAG_DEFAULTS = {"decoupled_weight_decay": False}
    _MOMENTUM_HYPER = "beta1"  # what CyclicLR / OneCycleLR cycle
    _FLAG_KEYS = {"amsgrad": "amsgrad", "maximize": "maximize", "decoupled_weight_decay": "decoupled_weight_decay",
                  "stochastic_rounding": "stochastic_rounding"}
    _QUANTIZED_KEYS = {"exp_avg": "signed", "exp_avg_sq": "unsigned"}
    _ABSMAX_ARGS = ("exp_avg_absmax", "exp_avg_sq_absmax")
    _GROUP_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad")  # what a loaded group must have

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False, schedule=None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None,
                 hyper_schedules: dict | None = None, stochastic_rounding: bool = False, master_weights: bool = False,
                 stochastic_rounding_seed: int | None = None, optim_bits: int = 32):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=bool(decoupled_weight_decay), hyper_schedules=hyper_schedules,
                        stochastic_rounding=stochastic_rounding, master_weights=master_weights, optim_bits=optim_bits)
        super().__init__(params, defaults, schedule, state_dtype, max_grad_norm, stochastic_rounding_seed)

    @staticmethod
    def _validate_group(group: dict) -> None:
        _check_nonnegative(group["lr"], "lr", "Invalid learning rate")
        _check_nonnegative(group["eps"], "eps", "Invalid epsilon value", tensor_ok=False)
        _check_nonnegative(group["weight_decay"], "weight_decay", "Invalid weight_decay value", tensor_ok=False)
        betas = group["betas"]
        if isinstance(betas, torch.Tensor) or not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"lrfused: betas must be a pair of numbers or of one-element tensors, got {betas!r}")
        if sum(isinstance(b, torch.Tensor) for b in betas) == 1:
            raise ValueError("betas must be either both floats or both Tensors")
        for i, beta in enumerate(betas):
            if isinstance(beta, torch.Tensor):
                if not _is_scalar_tensor(beta):
                    raise ValueError(f"Tensor betas[{i}] must be 1-element")
                beta = float(beta)
            elif not _is_number(beta):
                raise TypeError(f"lrfused: betas[{i}] must be a number, got {type(beta).__name__}")
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")

    def _state_keys(self, group) -> tuple:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def _allowed_state_keys(self) -> tuple:
        return ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", MASTER_KEY, "exp_avg_absmax", "exp_avg_sq_absmax")

    def _set_momentum(self, group, value) -> None:
        group["betas"] = (value, group["betas"][1])

    def _required_loaded_keys(self, saved_group) -> tuple:
        keys = ("step", "exp_avg", "exp_avg_sq")
        return keys + ("max_exp_avg_sq",) if saved_group.get("amsgrad") else keys

    def _hyper(self, group) -> dict:
        v = self._value
        beta1, beta2 = group["betas"]
        return {"lr": self._lr_hyper(group), "beta1": v(beta1), "beta2": v(beta2), "eps": float(group["eps"]),
                "weight_decay": float(group["weight_decay"])}

    def _call_step_op(self, group, params, grads, states, steps, sched_state, program, group_index, **scalars):
        h = self._hyper(group)
        flags = self._flags(group)
        ops.fused_adam_(params, grads, states[0], states[1], states[2], steps, sched_state, program, group_index,
                        base_lr=h["lr"], beta1=h["beta1"], beta2=h["beta2"], eps=h["eps"],
                        weight_decay=h["weight_decay"], amsgrad=bool(group["amsgrad"]),
                        maximize=bool(group["maximize"]),
                        decoupled_weight_decay=bool(flags & contract.FLAG.decoupled_weight_decay), **scalars)


class AdamW(Adam):
    """torch.optim.AdamW's math (decoupled weight decay with the scheduled lr: p *= 1 - lr_k * wd)."""

    _FLAG_DEFAULTS = {"decoupled_weight_decay": True}

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, schedule=None, state_dtype: torch.dtype | None = None,
                 max_grad_norm: float | None = None, hyper_schedules: dict | None = None,
                 stochastic_rounding: bool = False, master_weights: bool = False,
                 stochastic_rounding_seed: int | None = None, optim_bits: int = 32):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         foreach=foreach, maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True, schedule=schedule, state_dtype=state_dtype,
                         max_grad_norm=max_grad_norm, hyper_schedules=hyper_schedules,
                         stochastic_rounding=stochastic_rounding, master_weights=master_weights,
                         stochastic_rounding_seed=stochastic_rounding_seed, optim_bits=optim_bits)

    def _check_loaded_group_meaning(self, i: int, saved: dict) -> None:
        if saved.get("decoupled_weight_decay", True) is False:
            raise ValueError(
                f"lrfused: loaded param group {i} has decoupled_weight_decay=False: a torch.optim.Adam / lrfused.Adam "
                f"checkpoint (L2 weight decay), which AdamW would continue with another update; load it into "
                f"lrfused.Adam instead")
