"""Draw every schedule policy (torch's, HuggingFace's, timm's, DeepSpeed's, optax's, and the wrappers)
into one PNG grid.

    python -m lrfused.gallery OUT.png

Each panel shows lr / base_lr against the step, evaluated by the same C++ the kernels run; where a
policy cycles momentum, momentum is drawn dashed on a second axis. ReduceLROnPlateau panels feed the
plateau_report_ op (GreedyLR: greedy_report_) a synthetic loss curve (shown dotted) once per step.
"""
from __future__ import annotations

import math
import sys

import torch

from . import schedules as S

N = 100  # steps per panel


def entries():
    """(panel title, schedule) for every policy, with default-ish arguments over N steps."""
    return [
        ("LambdaLR(0.97**k)", S.LambdaLR(lambda k: 0.97 ** k, N)),
        ("MultiplicativeLR(0.98)", S.MultiplicativeLR(lambda k: 0.98, N)),
        ("StepLR(step_size=30)", S.StepLR(30)),
        ("MultiStepLR([30, 60, 80])", S.MultiStepLR([30, 60, 80], gamma=0.5)),
        ("ConstantLR(1/3, 25)", S.ConstantLR(total_iters=25)),
        ("LinearLR(1/3, 1, 40)", S.LinearLR(total_iters=40)),
        ("ExponentialLR(0.97)", S.ExponentialLR(0.97)),
        ("PolynomialLR(80, 2)", S.PolynomialLR(80, 2.0)),
        ("CosineAnnealingLR(40, 0.1)", S.CosineAnnealingLR(40, 0.1)),
        ("CosineAnnealingWarmRestarts(10, 2)", S.CosineAnnealingWarmRestarts(10, 2)),
        ("CyclicLR triangular", S.CyclicLR(0.1, 1.0, step_size_up=15)),
        ("CyclicLR triangular2", S.CyclicLR(0.1, 1.0, step_size_up=10, mode="triangular2")),
        ("CyclicLR exp_range", S.CyclicLR(0.1, 1.0, step_size_up=10, mode="exp_range", gamma=0.98)),
        ("OneCycleLR", S.OneCycleLR(1.0, total_steps=N)),
        ("OneCycleLR three_phase linear", S.OneCycleLR(1.0, total_steps=N, three_phase=True,
                                                       anneal_strategy="linear")),
        ("ReduceLROnPlateau(patience=5)", S.ReduceLROnPlateau(factor=0.5, patience=5)),
        ("SequentialLR(Linear, Cosine)", S.SequentialLR([S.LinearLR(0.05, total_iters=10),
                                                         S.CosineAnnealingLR(N - 10)], [10])),
        ("ChainedScheduler(Const, Exp)", S.ChainedScheduler([S.ConstantLR(0.5, 20), S.ExponentialLR(0.98)])),
        ("StepLR(2).per_epoch(10)", S.StepLR(2, 0.5).per_epoch(10)),
        ("hf: constant", S.get_schedule("constant")),
        ("hf: constant_with_warmup", S.get_schedule("constant_with_warmup", 10)),
        ("hf: linear", S.get_schedule("linear", 10, N)),
        ("hf: cosine", S.get_schedule("cosine", 10, N)),
        ("hf: cosine_with_restarts", S.get_schedule("cosine_with_restarts", 10, N, num_cycles=3)),
        ("hf: polynomial", S.get_schedule("polynomial", 10, N, power=2.0, lr_init=1.0, lr_end=0.05)),
        ("hf: inverse_sqrt", S.get_schedule("inverse_sqrt", 10)),
        ("hf: reduce_lr_on_plateau", S.get_schedule("reduce_lr_on_plateau", factor=0.3, patience=8)),
        ("hf: greedy", S.get_schedule("greedy", factor=0.8, patience=2, min_lr=0.05, smooth=True, window_size=5)),
        ("hf: cosine_with_min_lr", S.get_schedule("cosine_with_min_lr", 10, N, min_lr_rate=0.1)),
        ("hf: cosine_warmup_with_min_lr", S.get_schedule("cosine_warmup_with_min_lr", 10, N, min_lr_rate=0.1)),
        ("hf: warmup_stable_decay", S.get_schedule("warmup_stable_decay", 10, N, num_decay_steps=30,
                                                   min_lr_ratio=0.05)),
        ("timm: Cosine cycle_mul=2, decay=0.6", S.timm.CosineLRScheduler(12, lr_min=0.02, cycle_mul=2.0,
                                                                          cycle_decay=0.6, cycle_limit=3, warmup_t=5,
                                                                          warmup_lr_init=0.1, t_in_epochs=False)),
        ("timm: Cosine k_decay=2 + noise", S.timm.CosineLRScheduler(N, k_decay=2.0, t_in_epochs=False,
                                                                     noise_range_t=[20, 80], noise_pct=0.2)),
        ("timm: Tanh, 3 cycles", S.timm.TanhLRScheduler(30, cycle_limit=3, cycle_decay=0.7, t_in_epochs=False)),
        ("timm: Poly(power=2)", S.timm.PolyLRScheduler(80, power=2.0, warmup_t=10, t_in_epochs=False)),
        ("timm: MultiStep([30, 60])", S.timm.MultiStepLRScheduler([30, 60], 0.5, t_in_epochs=False)),
        ("timm: WSD(rsqrt stable, exp decay)", S.timm.WSDLRScheduler(N, 30, 0.02, "rsqrt", 10, decay_fn="exp",
                                                                      warmup_t=10, t_in_epochs=False)),
        ("deepspeed: WarmupLR (log)", S.deepspeed.WarmupLR(0.0, 1.0, 30)),
        ("deepspeed: WarmupDecayLR", S.deepspeed.WarmupDecayLR(N, 0.0, 1.0, 20, "linear")),
        ("deepspeed: WarmupCosineLR", S.deepspeed.WarmupCosineLR(N, 0.0, 15, 0.05)),
        ("deepspeed: LRRangeTest staircase", S.deepspeed.LRRangeTest(0.1, 10, 0.5, True)),
        ("deepspeed: OneCycle + decay", S.deepspeed.OneCycle(0.1, 1.0, 0.5, 30, 30, decay_step_size=5)),
        ("optax: warmup_cosine_decay(exp=2)", S.optax.warmup_cosine_decay_schedule(0.0, 1.0, 10, N, 0.05, 2.0)),
        ("optax: exponential_decay staircase", S.optax.exponential_decay(1.0, 10, 0.7, 10, True, 0.1)),
        ("optax: sgdr_schedule", S.optax.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=5,
                                                             decay_steps=30),
                                                        dict(init_value=0.0, peak_value=0.6, warmup_steps=5,
                                                             decay_steps=70)])),
        ("optax: cosine_onecycle", S.optax.cosine_onecycle_schedule(N, 1.0)),
        ("optax: piecewise_interpolate linear", S.optax.piecewise_interpolate_schedule(
            "linear", 0.2, {20: 5.0, 50: 0.5, 90: 0.1})),
        ("Clamp(Cosine, 0.2, 0.8)", S.CosineAnnealingLR(N).clamp(0.2, 0.8)),
        ("Restart(HF linear, 25)", S.get_schedule("linear", 5, 25).restart(25)),
    ]


def _synthetic_loss(n):
    return [2.0 * math.exp(-k / 8.0) + 0.5 + 0.03 * math.sin(1.7 * k) for k in range(n)]


def _plateau_lrs(schedule, n):
    """lr per step when the loss curve is reported once per step (through the schedule's report op)."""
    from .contract import SchedLayout

    layout = SchedLayout(1)
    state = torch.zeros(layout.size, dtype=torch.float64)
    report_state = torch.zeros(schedule._report_state_size(), dtype=torch.float64)
    slot = layout.slot("plateau_lr", 0)
    state[slot] = 1.0
    config = schedule._report_config([1.0])
    out = []
    for metric in _synthetic_loss(n):
        out.append(state[slot].item())
        schedule._report(state, report_state, torch.tensor(metric, dtype=torch.float64), config, 1)
    return out


def draw(path, n=N, cols=6):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = entries()
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.5 * rows), squeeze=False)
    steps = list(range(n))
    for ax, (title, s) in zip(axes.flat, items):
        lrs = _plateau_lrs(s, n) if s.is_plateau else s.lrs(n, 1.0).tolist()
        ax.plot(steps, lrs, color="tab:blue", linewidth=1.6)
        ax.set_title(title, fontsize=9)
        ax.set_ylim(bottom=min(0.0, min(lrs)) - 0.03, top=max(lrs) * 1.08 + 1e-3)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
        if s.is_plateau:
            loss = _synthetic_loss(n)
            top = max(loss)
            ax.plot(steps, [v / top for v in loss], color="gray", linestyle=":", linewidth=1.0)
        if s.cycles_momentum:
            ax2 = ax.twinx()
            ax2.plot(steps, s.momenta(n, 0.0).tolist(), color="tab:orange", linestyle="--", linewidth=1.2)
            ax2.tick_params(labelsize=7, colors="tab:orange")
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.suptitle("lrfused schedules: lr / base_lr against step (blue), momentum (orange, dashed), "
                 "plateau metric (gray, dotted)", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m lrfused.gallery OUT.png", file=sys.stderr)
        return 2
    draw(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
