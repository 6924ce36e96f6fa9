"""A whole training step -- forward, backward and lrfused's optimizer step with its schedule -- captured
once in a CUDA graph and replayed every iteration.

lrfused keeps the step counter and the schedule on the GPU and evaluates the lr inside the kernel, so the
captured graph stays valid while the lr changes: replay k applies lr_k. (torch's optimizers need
capturable=True plus a tensor lr that the host updates between replays, and their LRSchedulers cannot run
inside the graph.)

    python examples/cuda_graph_training.py --steps 500
    python examples/cuda_graph_training.py --check      # also runs eagerly and compares the losses
"""
from __future__ import annotations

import argparse
import copy
import sys
import time

import torch
from torch import nn

import lrfused
from lrfused import schedules as S


def make_model(width: int, depth: int, device) -> nn.Module:
    layers, d = [], 128
    for _ in range(depth):
        layers += [nn.Linear(d, width), nn.GELU()]
        d = width
    layers.append(nn.Linear(d, 10))
    return nn.Sequential(*layers).to(device)


def make_optimizer(model: nn.Module, steps: int, lr: float):
    warmup = max(1, steps // 20)
    schedule = S.SequentialLR([S.LinearLR(start_factor=0.01, total_iters=warmup),
                               S.CosineAnnealingLR(T_max=steps - warmup, eta_min=lr * 0.01)], milestones=[warmup])
    return lrfused.AdamW(model.parameters(), lr=lr, weight_decay=0.05, schedule=schedule)


def batch(i: int, size: int, device):
    g = torch.Generator().manual_seed(i)
    x = torch.randn(size, 128, generator=g)
    return x.to(device, non_blocking=True), (x[:, :10].argmax(dim=1)).to(device, non_blocking=True)


def train_graphed(model, opt, args, device, warmup: int = 3):
    static_x, static_y = batch(0, args.batch, device)
    # Warm-up steps on a side stream (they create the optimizer state and cuBLAS workspaces); they are
    # real steps, so the schedule is at step `warmup` when the capture starts.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(warmup):
            x, y = batch(i, args.batch, device)
            static_x.copy_(x)
            static_y.copy_(y)
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(static_x), static_y).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        static_loss = nn.functional.cross_entropy(model(static_x), static_y)
        static_loss.backward()
        opt.step()

    losses = []
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(warmup, args.steps):
        x, y = batch(i, args.batch, device)
        static_x.copy_(x)
        static_y.copy_(y)
        graph.replay()
        losses.append(static_loss.detach().clone())
        if i % args.log_every == 0:
            print(f"[graph] step {i:5d}  loss {losses[-1].item():.4f}  lr {opt.get_last_lr()[0]:.3e}")
    torch.cuda.synchronize()
    return torch.stack(losses), (time.perf_counter() - t0) / (args.steps - warmup)


def train_eager(model, opt, args, device, skip: int = 3):
    losses = []
    t0 = None
    for i in range(args.steps):
        if i == skip:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        x, y = batch(i, args.batch, device)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= skip:
            losses.append(loss.detach())
    torch.cuda.synchronize()
    return torch.stack(losses), (time.perf_counter() - t0) / (args.steps - skip)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--check", action="store_true", help="also train eagerly and compare losses and step time")
    args = ap.parse_args(argv)
    if not lrfused.has_cuda():
        print("cuda_graph_training.py needs a GPU and a CUDA build of lrfused (lrfused.has_cuda() is False)",
              file=sys.stderr)
        return 2
    device = torch.device("cuda")
    torch.manual_seed(0)
    model = make_model(args.width, args.depth, device)
    eager_model = copy.deepcopy(model)
    opt = make_optimizer(model, args.steps, args.lr)
    losses, graph_s = train_graphed(model, opt, args, device)
    schedule = opt.param_groups[0]["schedule"]
    print(f"graph replays: {1e3 * graph_s:.3f} ms/step; final lr {opt.get_last_lr()[0]:.4e} "
          f"(schedule: {schedule.lr_at(args.steps - 1, args.lr):.4e})")
    if args.check:
        eager_opt = make_optimizer(eager_model, args.steps, args.lr)
        eager_losses, eager_s = train_eager(eager_model, eager_opt, args, device)
        diff = float((losses - eager_losses).abs().max())
        print(f"eager: {1e3 * eager_s:.3f} ms/step ({eager_s / graph_s:.2f}x slower than the graph); "
              f"max |loss diff| graph vs eager = {diff:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
