"""Learning-rate schedules: small immutable objects packed into the flat program the kernels evaluate.

Every formula lives once, in ``csrc/schedule.h`` (docs/schedules.md); the node kinds and their fields are
the contract's (``csrc/contract.h``, read through ``lrfused.contract``). This package validates arguments
(as torch does, naming the argument), packs a schedule into a float64 "program" per param group, and
evaluates it on the host through the same C++ (``torch.ops.lrfused.schedule_lrs`` / ``schedule_momenta``).

Rooms: ``base`` (the Schedule class, argument checks, packing), ``torch_policies`` (torch's policies),
``composites`` (SequentialLR, ChainedScheduler, per_epoch), ``hf`` (HuggingFace's named schedules),
``from_torch`` (the converter from torch scheduler objects), ``plot``; and one namespace per other library,
with its own names: ``timm`` (+ ``from_timm``), ``deepspeed`` (+ ``from_deepspeed``), ``optax``.

Step indexing: ``lr_at(k, base_lr)`` is the lr that the k-th ``opt.step()`` (k = 0, 1, ...) applies, which
is the lr torch applies in the loop ``opt.step(); sched.step()``.
"""
from . import deepspeed, optax, timm
from .base import DEFAULT_TABULATE_STEPS, Constant, Schedule
from .composites import ChainedScheduler, Clamp, PerEpoch, Restart, SequentialLR
from .deepspeed import from_deepspeed
from .from_torch import from_torch
from .hf import HF_NAMES, GreedyLR, HFSchedule, get_schedule
from .plot import plot
from .torch_policies import (ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR, ExponentialLR,
                             LambdaLR, LinearLR, MultiplicativeLR, MultiStepLR, OneCycleLR, PolynomialLR,
                             ReduceLROnPlateau, StepLR)
from .timm import from_timm

__all__ = [
    "Schedule", "Constant", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR",
    "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
    "CyclicLR", "OneCycleLR", "ReduceLROnPlateau", "SequentialLR", "ChainedScheduler", "PerEpoch",
    "HFSchedule", "GreedyLR", "get_schedule", "from_torch", "plot", "HF_NAMES", "DEFAULT_TABULATE_STEPS", "Clamp", "Restart",
    "from_timm", "from_deepspeed", "timm", "deepspeed", "optax",
]

# Other libraries' schedules keep their namespace module (lrfused.schedules.timm.CosineLRScheduler ...).
_NAMESPACES = (timm.__name__, deepspeed.__name__, optax.__name__)


def _publish_under_package() -> None:
    """Schedules pickle (and show) as ``lrfused.schedules.<Name>`` whichever room defines them, so that
    checkpoints do not depend on the package's inner layout."""
    todo = [Schedule]
    while todo:
        cls = todo.pop()
        if cls.__module__ not in _NAMESPACES:
            cls.__module__ = __name__
        todo.extend(cls.__subclasses__())


_publish_under_package()
