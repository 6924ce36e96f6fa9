"""An LRScheduler-compatible view of an lrfused optimizer's schedule, for trainers (HuggingFace
``Trainer``, Lightning, accelerate) that want an ``(optimizer, scheduler)`` pair.

lrfused advances the schedule inside ``optimizer.step()``; the handle therefore never advances anything.
``handle.step()`` is a no-op (the trainer's usual ``opt.step(); sched.step()`` applies each scheduled lr
exactly once), except that ``handle.step(metric)`` feeds ``ReduceLROnPlateau`` through ``opt.report``.
The schedule's position and state live in the optimizer's ``state_dict()``; the handle's own state dict
only carries its call counter, so checkpointing both (as trainers do) restores the run.

The handle is an instance of ``torch.optim.lr_scheduler.LRScheduler`` (and, when the optimizer's schedule
is ``ReduceLROnPlateau``, of ``torch.optim.lr_scheduler.ReduceLROnPlateau``), because trainers dispatch on
these types, but it skips ``LRScheduler.__init__``: that would write ``initial_lr`` into the param groups,
wrap ``optimizer.step`` and take an initial step.

``param_groups[i]["lr"]`` follows torch's convention (``initial_lr`` the base, ``lr`` the lr of the next step),
so tools that read the lr from the param groups (Lightning's ``LearningRateMonitor``, HF Trainer's log under
a plateau schedule) show what they show with torch; ``get_last_lr()`` gives the lr the latest step applied.
"""
from __future__ import annotations

from typing import Any

from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau



class LRSchedulerHandle(LRScheduler):
    """``opt.scheduler``: an LRScheduler-compatible handle on an lrfused optimizer's schedule."""

    def __new__(cls, optimizer=None, *args, **kwargs):
        # Trainers special-case ReduceLROnPlateau (they call step(metric) after evaluation instead of
        # step() after each optimizer step), so a plateau schedule gets a handle of that type.
        if cls is LRSchedulerHandle and optimizer is not None and _has_plateau(optimizer):
            cls = PlateauSchedulerHandle
        return super().__new__(cls)

    def __init__(self, optimizer) -> None:  # noqa: D107 - deliberately not LRScheduler.__init__
        from .optim.base import _FusedOptimizer

        if not isinstance(optimizer, _FusedOptimizer):
            raise TypeError(f"lrfused: LRSchedulerHandle takes an lrfused optimizer, got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self._state = optimizer.schedule_state  # everything the handle reads goes through this view
        # Calls of step(); accelerate's AcceleratedScheduler also bumps it during gradient accumulation.
        self._step_count = 0

    # ---- what the schedule says -----------------------------------------------------------------
    @property
    def base_lrs(self) -> list[float]:
        """Each group's base lr (``initial_lr``, as torch's schedulers keep it)."""
        return self._state.base_lrs

    @property
    def last_epoch(self) -> int:
        """The number of applied optimizer steps (skipped ``found_inf`` steps do not count), read from the
        optimizer's on-device schedule state: on a GPU this synchronises; it is for logging and checks."""
        return self._state.step

    @last_epoch.setter
    def last_epoch(self, value) -> None:
        raise AttributeError("lrfused: last_epoch is the optimizer's step count and cannot be set; the schedule "
                             "position is restored by optimizer.load_state_dict()")

    def get_last_lr(self) -> list[float]:
        """The lr applied by the most recent ``optimizer.step()``, per group (before any step: step 0's).
        Trainers read it between ``optimizer.step()`` and ``scheduler.step()``, where torch's scheduler
        reports the same value."""
        return self.optimizer.get_last_lr()

    @property
    def _last_lr(self) -> list[float]:
        return self.get_last_lr()

    def get_lr(self) -> list[float]:
        """The lr the next ``optimizer.step()`` will apply, per group (may synchronise on a GPU)."""
        k = self.last_epoch
        base_lrs = self._state.base_lrs
        # the plateau's lrs live on the device: read (a sync on a GPU) only when some group needs them
        plateau_lrs = self._state.plateau_lrs if _has_plateau(self.optimizer) else None
        groups = self.optimizer.param_groups
        return [plateau_lrs[g] if group["schedule"].is_plateau
                else group["schedule"].lr_at(k, base_lrs[g], group=g, num_groups=len(groups))
                for g, group in enumerate(groups)]

    # ---- the scheduler protocol -----------------------------------------------------------------
    def step(self, metrics=None, epoch=None) -> None:
        """A no-op for the lr, which advances inside ``optimizer.step()``. With a ReduceLROnPlateau
        schedule, a metric (first argument) is forwarded to ``optimizer.report``; otherwise the argument
        (torch's deprecated ``epoch``) is ignored."""
        self._step_count += 1
        if metrics is not None and _has_plateau(self.optimizer):
            self.optimizer.report(metrics)

    def state_dict(self) -> dict[str, Any]:
        """Only the handle's call counter: the schedule's position is in ``optimizer.state_dict()``."""
        return {"_step_count": self._step_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the call counter. Other keys (a torch scheduler's state dict) are ignored: the schedule
        position comes from the optimizer's state dict, which also accepts a torch optimizer's."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"lrfused: load_state_dict takes a dict, got {type(state_dict).__name__}")
        self._step_count = int(state_dict.get("_step_count", self._step_count))

    def __repr__(self) -> str:
        schedules = [group["schedule"] for group in self.optimizer.param_groups]
        return f"{type(self).__name__}({type(self.optimizer).__name__}, schedules={schedules!r})"


class PlateauSchedulerHandle(LRSchedulerHandle, ReduceLROnPlateau):
    """The handle of an optimizer whose schedule is ReduceLROnPlateau: ``step(metric)`` reports the metric
    (torch's ReduceLROnPlateau.step takes one too)."""

    def step(self, metrics=None, epoch=None) -> None:
        if metrics is None:
            raise TypeError("lrfused: the optimizer's schedule is ReduceLROnPlateau, so scheduler.step() needs "
                            "the metric (or call optimizer.report(metric))")
        super().step(metrics)

    @property
    def num_bad_epochs(self) -> int:
        return self._state.plateau["num_bad_epochs"]

    @property
    def cooldown_counter(self) -> int:
        return self._state.plateau["cooldown_counter"]

    @property
    def best(self) -> float:
        return self._state.plateau["best"]


def _has_plateau(optimizer) -> bool:
    return any(getattr(group.get("schedule"), "is_plateau", False) for group in optimizer.param_groups)
