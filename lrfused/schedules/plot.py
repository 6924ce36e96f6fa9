"""``plot``: a PNG of lr (and momentum) against the step (matplotlib)."""
from __future__ import annotations

from .base import Schedule, _check_pos_int

# ----------------------------------------------------------------------------------------------------
# plotting


def _named(schedules) -> dict:
    if isinstance(schedules, Schedule):
        return {repr(schedules): schedules}
    if isinstance(schedules, dict):
        return dict(schedules)
    return {repr(s): s for s in schedules}


def plot(schedules, num_steps: int, path, base_lr: float = 1.0, *, title: str | None = None):
    """Write a PNG of lr (and momentum, where a schedule cycles it) against the step.

    ``schedules``: one Schedule, a list of them, or a dict name -> Schedule."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    named = _named(schedules)
    if not named:
        raise ValueError("plot needs at least one schedule")
    num_steps = _check_pos_int("num_steps", num_steps)
    with_m = any(s.cycles_momentum for s in named.values())
    fig, axes = plt.subplots(2 if with_m else 1, 1, sharex=True, squeeze=False,
                             figsize=(8, 6 if with_m else 4))
    steps = list(range(num_steps))
    for name, s in named.items():
        axes[0][0].plot(steps, s.lrs(num_steps, base_lr).numpy(), label=name, linewidth=1.4)
        if with_m and s.cycles_momentum:
            axes[1][0].plot(steps, s.momenta(num_steps, float("nan")).numpy(), label=name, linewidth=1.4)
    axes[0][0].set_ylabel("lr")
    axes[0][0].grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    if title:
        axes[0][0].set_title(title)
    if with_m:
        axes[1][0].set_ylabel("momentum / beta1")
        axes[1][0].grid(alpha=0.3)
    axes[-1][0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

