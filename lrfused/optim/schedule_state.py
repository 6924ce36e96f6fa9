"""The schedule's on-device state of an optimizer: one float64 ``sched_state`` tensor per device (slots:
``lrfused.contract.SchedLayout``), what ``param_groups`` show (torch's scheduler convention), and
``ScheduleState``, the read-only view that tools (the scheduler handle, loggers, tests) read it through."""
from __future__ import annotations

import math

import torch

from .. import contract
from .. import schedules as _schedules
from ..contract import SchedLayout
from .checks import _local


class ScheduleStateMixin:
    """Owns ``self._sched_states`` (device -> sched_state), ``self._shown`` and ``self._lr_views``."""

    def _layout(self) -> SchedLayout:
        return SchedLayout(len(self.param_groups))

    def _sched_state(self, device: torch.device) -> torch.Tensor:
        layout = self._layout()
        old = self._sched_states.get(device)
        if old is not None and old.numel() == layout.size:
            return old
        values = torch.zeros(layout.size, dtype=torch.float64)  # built on the host, copied once
        plateau = self._plateau_schedule()
        worse = -math.inf if (plateau is not None and plateau.mode == "max") else math.inf
        values[layout.PLATEAU_BEST] = worse
        for g, group in enumerate(self.param_groups):
            values[layout.slot("last_lr", g)] = values[layout.slot("next_lr", g)] = self._lr_at(g, 0)
            values[layout.slot("plateau_lr", g)] = self._base_lr(group)
            values[layout.slot("next_momentum", g)] = self._momentum_at(g, 0)
        if old is not None:  # groups were added: keep the counters and what the old groups had
            old = old.cpu()
            old_layout = SchedLayout(SchedLayout.groups_of(old.numel()))
            values[:layout.HEADER] = old[:layout.HEADER]
            for region in layout.REGIONS:
                new_slots = layout.region(region)
                values[new_slots.start:new_slots.start + old_layout.num_groups] = old[old_layout.region(region)]
        state = values.to(device)
        self._sched_states[device] = state
        self._lr_views = None
        return state

    # ---- what param_groups show: torch's scheduler convention -------------------------------------
    # Host evaluations of group g's schedule: with the group's index and the number of groups, so that a
    # per-group list (OneCycleLR's max_lr=[...], DeepSpeed's per-group lrs) gives group g its own entry.
    def _lr_at(self, g: int, k: int) -> float:
        group = self.param_groups[g]
        return float(group["schedule"].lr_at(k, self._base_lr(group), group=g, num_groups=len(self.param_groups)))

    def _momentum_at(self, g: int, k: int) -> float:
        group = self.param_groups[g]
        fallback = self._hyper(group)[self._MOMENTUM_HYPER]
        if not group["schedule"].cycles_momentum:
            return fallback
        return float(group["schedule"].momentum_at(k, fallback, group=g, num_groups=len(self.param_groups)))

    @staticmethod
    def _scheduled(group) -> bool:
        return not isinstance(group.get("schedule"), _schedules.Constant)

    def _base_lr(self, group) -> float:
        """The schedule's base lr: ``initial_lr`` for a scheduled group, else ``lr`` (which is then simply the
        lr, as in torch without a scheduler, and may be written by a torch scheduler)."""
        return self._value(group["initial_lr"] if self._scheduled(group) and "initial_lr" in group else group["lr"])

    def _absorb_lr_writes(self):
        """A user's write to a scheduled group's ``lr`` between steps rescales its schedule: the base becomes
        base * written / shown, so the next step applies the written lr and the schedule goes on from there
        (what torch's chainable schedulers do with such a write). For ReduceLROnPlateau the written lr becomes
        the plateau's current lr, as torch's ReduceLROnPlateau reads it. A write to ``initial_lr`` sets the
        base directly. Returns a function that undoes what this did (for a step that is then refused)."""
        undo = []
        num_groups = len(self.param_groups)
        for g, group in enumerate(self.param_groups):
            shown = self._shown.get(g)
            if shown is None or group["lr"] is shown or not self._scheduled(group):
                continue
            written, before = self._value(group["lr"]), self._value(shown)
            if group["schedule"].is_plateau:
                for state in self._sched_states.values():
                    slot = SchedLayout(num_groups).slot("plateau_lr", g)
                    undo.append(lambda state=state, slot=slot, v=state[slot].clone(): state.__setitem__(slot, v))
                    state[slot] = written
            else:
                undo.append(lambda group=group, v=group["initial_lr"]: group.__setitem__("initial_lr", v))
                base = self._value(group["initial_lr"])
                group["initial_lr"] = written if before == 0 else base * (written / before)
            undo.append(lambda g=g, v=shown: self._shown.__setitem__(g, v))
            self._shown[g] = group["lr"]

        def run():
            for action in reversed(undo):
                action()
        return run

    def _publish_lrs(self) -> None:
        """Puts in each scheduled group's ``lr`` what torch shows after ``opt.step(); sched.step()``: the lr
        the next step applies. A Python float for CPU parameters; for GPU parameters a 0-dim float64 tensor
        that the kernels keep current (a view into the schedule state: no synchronisation; reading it as a
        number synchronises)."""
        views = self._lr_views
        if views is None:
            views = self._lr_views = self._make_lr_views()
        for g, view, momentum in views:
            group = self.param_groups[g]
            if view is not None:
                value = float(view) if view.device.type == "cpu" else view
                group["lr"] = value
                self._shown[g] = value
            if momentum is not None:
                self._set_momentum(group, float(momentum) if momentum.device.type == "cpu" else momentum)

    def _set_momentum(self, group, value) -> None:
        """What torch's CyclicLR / OneCycleLR leave in a group: SGD's momentum or Adam's betas[0]."""
        raise NotImplementedError

    def _make_lr_views(self):
        layout = self._layout()
        views = []
        for g, group in enumerate(self.param_groups):
            cycles = group["schedule"].cycles_momentum
            if not (self._scheduled(group) or cycles) or not group["params"]:
                continue
            state = self._sched_states.get(_local(group["params"][0]).device)
            if state is None or state.numel() != layout.size:
                continue
            slot = layout.slot("plateau_lr" if group["schedule"].is_plateau else "next_lr", g)
            views.append((g, state[slot] if self._scheduled(group) else None,
                          state[layout.slot("next_momentum", g)] if cycles else None))
        return views

    def _plateau_schedule(self):
        plateaus = [g["schedule"] for g in self.param_groups if g["schedule"].is_plateau]
        if not plateaus:
            return None
        if any(s is not plateaus[0] and s != plateaus[0] for s in plateaus[1:]):
            raise ValueError("lrfused: param groups use different ReduceLROnPlateau schedules; one optimizer "
                             "drives one plateau state machine, so give every group the same one")
        return plateaus[0]

    def _per_group(self, region: str, before_any_step) -> list[float]:
        """Each group's slot of ``region``, read from the schedule state of the group's own device (only the
        buckets on a device write its state), one read per device; ``before_any_step(g)`` where that
        state does not exist yet."""
        layout = self._layout()
        rows: dict = {}
        values = []
        for g, group in enumerate(self.param_groups):
            device = _local(group["params"][0]).device if group["params"] else None
            state = self._sched_states.get(device)
            if state is None or state.numel() != layout.size:
                values.append(before_any_step(g))
                continue
            if device not in rows:
                rows[device] = state[layout.region(region)].tolist()
            values.append(rows[device][g])
        return values

    def _lr_before_any_step(self, g: int) -> float:
        return self._lr_at(g, 0)

    def get_last_lr(self) -> list[float]:
        """The lr applied by the most recent step(), per group (reads device memory: for logging)."""
        return self._per_group("last_lr", self._lr_before_any_step)

    @property
    def schedule_state(self) -> "ScheduleState":
        """A read-only view of the schedule's position and on-device state (reading it may synchronise)."""
        return ScheduleState(self)


class ScheduleState:
    """What an lrfused optimizer's schedule state holds, read-only: the step count, the lrs and momenta
    per group, the ReduceLROnPlateau counters. Reads device memory (on a GPU each read synchronises): for
    logging, trainers' scheduler handles and tests, not for the training loop."""

    def __init__(self, optimizer):
        self._optimizer = optimizer

    @property
    def devices(self) -> list:
        """The devices that hold a schedule state (those of the parameters)."""
        return list(self._optimizer._sched_states)

    def tensor(self, device=None) -> torch.Tensor:
        """The live float64 sched_state of ``device`` (default: the first parameter's device), created if
        needed: what the ops take as ``sched_state``. Slots: ``lrfused.contract.SchedLayout``."""
        opt = self._optimizer
        if device is None:
            device = next((_local(p).device for g in opt.param_groups for p in g["params"]), torch.device("cpu"))
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # states are kept per indexed device, as params are
            device = torch.device("cuda", torch.cuda.current_device())
        return opt._sched_state(device)

    def _first(self):
        states = self._optimizer._sched_states
        for group in self._optimizer.param_groups:
            device = _local(group["params"][0]).device if group["params"] else None
            if device in states:
                return states[device]
        return next(iter(states.values()), None)

    @property
    def layout(self) -> SchedLayout:
        return self._optimizer._layout()

    @property
    def step(self) -> int:
        """k: the number of applied optimizer steps (skipped ``found_inf`` steps do not count)."""
        state = self._first()
        return 0 if state is None else int(state[SchedLayout.STEP])

    @property
    def base_lrs(self) -> list[float]:
        """Each group's base lr (``initial_lr`` for a scheduled group, as torch's schedulers keep it)."""
        return [self._optimizer._base_lr(group) for group in self._optimizer.param_groups]

    @property
    def last_lrs(self) -> list[float]:
        """The lr the latest step applied, per group (before any step: step 0's)."""
        return self._optimizer.get_last_lr()

    @property
    def next_lrs(self) -> list[float]:
        """The lr the next step applies, per group, as the latest step computed it."""
        opt = self._optimizer
        return opt._per_group("next_lr", opt._lr_before_any_step)

    @property
    def next_momenta(self) -> list[float]:
        """The momentum (SGD) or beta1 (Adam) the next step applies, per group."""
        opt = self._optimizer
        return opt._per_group("next_momentum", lambda g: opt._momentum_at(g, 0))

    @property
    def plateau_lrs(self) -> list[float]:
        """ReduceLROnPlateau's current lr per group (the base lr until it reduces)."""
        opt = self._optimizer
        return opt._per_group("plateau_lr", lambda g: opt._base_lr(opt.param_groups[g]))

    @property
    def plateau(self) -> dict | None:
        """ReduceLROnPlateau's counters (torch's attribute names), or None without a plateau schedule."""
        schedule = self._optimizer._plateau_schedule()
        if schedule is None:
            return None
        state = self._first()
        header = [0.0] * SchedLayout.HEADER if state is None else state[:SchedLayout.HEADER].tolist()  # one read
        reports = int(header[SchedLayout.PLATEAU_EPOCH])
        best = header[SchedLayout.PLATEAU_BEST] if reports else (-math.inf if schedule.mode == "max" else math.inf)
        out = {"best": best, "num_bad_epochs": int(header[SchedLayout.PLATEAU_BAD]),
               "cooldown_counter": int(header[SchedLayout.PLATEAU_COOLDOWN]), "num_reports": reports}
        if schedule._report_state_size():  # GreedyLR: its counters, under HF's attribute names
            states = self._optimizer._report_states
            extra = next(iter(states.values())).tolist()[:contract.GREEDY_SLOTS["ring"]] if states else None
            slot = contract.GREEDY_SLOTS
            out.update(num_good_epochs=int(extra[slot["num_good_epochs"]]) if extra else 0,
                       warmup_counter=int(extra[slot["warmup_counter"]]) if extra else 0,
                       reset_start=schedule.reset_start - (int(extra[slot["at_min_reductions"]]) if extra else 0))
        return out

    def __repr__(self) -> str:
        return f"ScheduleState(step={self.step}, last_lrs={self.last_lrs})"
