"""SGD (with momentum, dampening, Nesterov, weight decay, maximize): torch.optim.SGD's math with the schedule
fused into the update."""
from __future__ import annotations

import torch

from .._ops import ops
from .base import _FusedOptimizer
from .checks import MASTER_KEY, _check_nonnegative


class SGD(_FusedOptimizer):
    """torch.optim.SGD's math with the learning-rate schedule fused into the update."""

    _FAMILY = "SGD"
    _FLAG_KEYS = {"nesterov": "nesterov", "maximize": "maximize", "stochastic_rounding": "stochastic_rounding"}
    _QUANTIZED_KEYS = {"momentum_buffer": "signed"}
    _ABSMAX_ARGS = ("momentum_buffer_absmax",)
    _MOMENTUM_HYPER = "momentum"  # what CyclicLR / OneCycleLR cycle
    _GROUP_KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")  # what a loaded group must have

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float | torch.Tensor = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None,
                 schedule=None, state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None,
                 hyper_schedules: dict | None = None, stochastic_rounding: bool = False, master_weights: bool = False,
                 stochastic_rounding_seed: int | None = None, optim_bits: int = 32):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused, hyper_schedules=hyper_schedules, stochastic_rounding=stochastic_rounding,
                        master_weights=master_weights, optim_bits=optim_bits)
        super().__init__(params, defaults, schedule, state_dtype, max_grad_norm, stochastic_rounding_seed)

    @staticmethod
    def _validate_group(group: dict) -> None:
        _check_nonnegative(group["lr"], "lr", "Invalid learning rate")
        _check_nonnegative(group["momentum"], "momentum", "Invalid momentum value", tensor_ok=False)
        _check_nonnegative(group["dampening"], "dampening", "Invalid dampening value", tensor_ok=False)
        _check_nonnegative(group["weight_decay"], "weight_decay", "Invalid weight_decay value")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _check_hyper_schedules_fit(self, group: dict) -> None:
        if group.get("nesterov") and "dampening" in (group.get("hyper_schedules") or {}):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening: a dampening schedule "
                             "cannot be used with nesterov=True")

    def _state_keys(self, group) -> tuple:
        # A schedule that cycles momentum sets it at every step (as torch's CyclicLR/OneCycleLR overwrite
        # group["momentum"]), so the buffer exists even when the constructor's momentum is 0.
        momentum = group["schedule"].cycles_momentum or group["momentum"] != 0
        return ("momentum_buffer",) if momentum else ()

    def _set_momentum(self, group, value) -> None:
        group["momentum"] = value

    def _allowed_state_keys(self) -> tuple:
        return ("momentum_buffer", "step", MASTER_KEY, "momentum_buffer_absmax")

    def _hyper(self, group) -> dict:
        v = self._value
        return {"lr": self._lr_hyper(group), "momentum": v(group["momentum"]), "dampening": float(group["dampening"]),
                "weight_decay": v(group["weight_decay"])}

    def _call_step_op(self, group, params, grads, states, steps, sched_state, program, group_index, **scalars):
        h = self._hyper(group)
        ops.fused_sgd_(params, grads, states[0], steps, sched_state, program, group_index, base_lr=h["lr"],
                       momentum=h["momentum"], dampening=h["dampening"], weight_decay=h["weight_decay"],
                       nesterov=bool(group["nesterov"]), maximize=bool(group["maximize"]), **scalars)
