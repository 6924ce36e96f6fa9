"""Train a small character-level GPT with lrfused.AdamW and a warmup + cosine schedule fused into the step.

    python examples/train_gpt.py                      # 4 layers, d=256 (~3.2M params), 300 steps, CPU
    python examples/train_gpt.py --device cuda --steps 2000
    python examples/train_gpt.py --quick --compare-torch
    python examples/train_gpt.py --compare-memory --plot benchmarks/results/memory-loss-curves.png

--compare-torch trains the same model from the same seed on the same batches with torch.optim.AdamW and the
equivalent torch scheduler (SequentialLR of LinearLR and CosineAnnealingLR, stepped after every
optimizer step), then reports how far the two loss curves are apart and the step-time speedup. The lrs
applied are identical; the updates differ from torch's at the fp32 rounding level, as torch's own
fused=True AdamW does. With the default 4-layer model those ulp differences stay ~1e-6 in the loss for
the first dozen steps and are then amplified by the high-lr phase to ~1e-3 (measured on CPU, 30 steps:
lrfused vs torch 7.8e-3, torch fused=True vs torch single-tensor 4.3e-3); --quick stays below 1e-5.

--compare-memory trains, on the same batches and schedule, the memory options of issue 15 next to 32-bit
AdamW state: lrfused's optim_bits=8 (and torchao's AdamW8bit, when torchao is installed), and a bfloat16 copy
of the model with lrfused's stochastic_rounding=True, master_weights=True and plain bfloat16 (and torchao's
_AdamW(bf16_stochastic_round=True)); it reports each run's final loss and bytes of optimizer state per
parameter, and --plot draws the loss curves.

The text is embedded below (public domain: Lincoln's Gettysburg Address and Shakespeare's sonnets 18 and
116), tokenised one character per token.
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

import lrfused
from lrfused import schedules as S

TEXT = """\
Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in
Liberty, and dedicated to the proposition that all men are created equal.
Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived and so
dedicated, can long endure. We are met on a great battle-field of that war. We have come to dedicate a
portion of that field, as a final resting place for those who here gave their lives that that nation
might live. It is altogether fitting and proper that we should do this.
But, in a larger sense, we can not dedicate -- we can not consecrate -- we can not hallow -- this ground.
The brave men, living and dead, who struggled here, have consecrated it, far above our poor power to add
or detract. The world will little note, nor long remember what we say here, but it can never forget what
they did here. It is for us the living, rather, to be dedicated here to the unfinished work which they
who fought here have thus far so nobly advanced. It is rather for us to be here dedicated to the great
task remaining before us -- that from these honored dead we take increased devotion to that cause for
which they gave the last full measure of devotion -- that we here highly resolve that these dead shall
not have died in vain -- that this nation, under God, shall have a new birth of freedom -- and that
government of the people, by the people, for the people, shall not perish from the earth.

Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.

Let me not to the marriage of true minds
Admit impediments. Love is not love
Which alters when it alteration finds,
Or bends with the remover to remove.
O no! it is an ever-fixed mark
That looks on tempests and is never shaken;
It is the star to every wand'ring bark,
Whose worth's unknown, although his height be taken.
Love's not Time's fool, though rosy lips and cheeks
Within his bending sickle's compass come;
Love alters not with his brief hours and weeks,
But bears it out even to the edge of doom.
If this be error and upon me prov'd,
I never writ, nor no man ever lov'd.
"""


class CharTokenizer:
    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> torch.Tensor:
        return torch.tensor([self.index[c] for c in s], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, vocab: int, context: int, layers: int, d: int, heads: int):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(context, d)
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(layers)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.tok.weight  # tied embeddings
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(T, device=idx.device))
        logits = self.head(self.ln(self.blocks(x)))
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    @torch.no_grad()
    def generate(self, idx, n: int, context: int):
        for _ in range(n):
            logits = self(idx[:, -context:])[:, -1]
            idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)
        return idx


def param_groups(model: nn.Module, weight_decay: float):
    """Weight decay on matrices only (GPT-2 style): two param groups sharing one schedule."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def batches(data: torch.Tensor, steps: int, batch: int, context: int, seed: int, device):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ix = torch.randint(len(data) - context - 1, (batch,), generator=g)
        x = torch.stack([data[i:i + context] for i in ix])
        y = torch.stack([data[i + 1:i + 1 + context] for i in ix])
        yield x.to(device), y.to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Run:
    """One model + optimizer (+ torch scheduler, None for lrfused, whose schedule advances in opt.step())."""

    def __init__(self, label, model, opt, sched=None):
        self.label, self.model, self.opt, self.sched = label, model, opt, sched
        self.losses, self.lrs, self.step_times, self.opt_times = [], [], [], []

    def step(self, x, y, clip, device):
        _sync(device)
        t0 = time.perf_counter()
        loss = self.model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        lr = self.opt.param_groups[0]["lr"] if self.sched is not None else None  # torch: the lr about to apply
        _sync(device)
        t1 = time.perf_counter()
        self.opt.step()
        if self.sched is not None:
            self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        _sync(device)
        t2 = time.perf_counter()
        self.losses.append(loss.item())
        self.lrs.append(self.opt.get_last_lr()[0] if lr is None else lr)
        self.step_times.append(t2 - t0)
        self.opt_times.append(t2 - t1)

    def median_ms(self, times, skip):
        return 1e3 * statistics.median(times[skip:] or times)


def train(runs, data, args, device):
    """Trains the runs in lockstep on the same batches (so machine noise hits them alike)."""
    for step, (x, y) in enumerate(batches(data, args.steps, args.batch, args.context, args.seed, device)):
        for run in runs:
            run.step(x, y, args.clip, device)
            if step % args.log_every == 0 or step == args.steps - 1:
                print(f"[{run.label}] step {step:5d}  loss {run.losses[-1]:.4f}  lr {run.lrs[-1]:.3e}  "
                      f"step {1e3 * run.step_times[-1]:7.2f} ms  "
                      f"(optimizer+schedule {1e3 * run.opt_times[-1]:6.3f} ms)")


def build_schedule(args):
    warmup = max(1, args.steps // 10)
    return warmup, S.SequentialLR([S.LinearLR(start_factor=1e-2, end_factor=1.0, total_iters=warmup),
                                   S.CosineAnnealingLR(T_max=args.steps - warmup, eta_min=args.lr * 0.1)],
                                  milestones=[warmup])


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--quick", action="store_true", help="a tiny model and 40 steps: a smoke test in seconds")
    ap.add_argument("--compare-torch", action="store_true",
                    help="also train with torch.optim.AdamW + the torch scheduler and compare")
    ap.add_argument("--compare-memory", action="store_true",
                    help="also train with 8-bit state, and a bf16 model with stochastic rounding / master weights")
    ap.add_argument("--plot", default=None, help="with --compare-memory: write the loss curves to this PNG")
    args = ap.parse_args(argv)
    if args.quick:
        args.layers, args.d_model, args.heads, args.context, args.batch = 2, 64, 2, 32, 8
        args.steps, args.log_every = min(args.steps, 40), 10
    if args.steps < 2:
        ap.error("--steps must be at least 2")
    return args


def torch_schedule(opt, args, warmup):
    """torch's equivalent of build_schedule, for optimizers without lrfused's fused schedule."""
    L = torch.optim.lr_scheduler
    return L.SequentialLR(opt, [L.LinearLR(opt, start_factor=1e-2, end_factor=1.0, total_iters=warmup),
                                L.CosineAnnealingLR(opt, T_max=args.steps - warmup, eta_min=args.lr * 0.1)],
                          milestones=[warmup])


def state_bytes_per_param(opt, n_params: int) -> float:
    """Bytes of optimizer state per parameter (step counters excluded; 8-bit state counts codes and scales)."""
    total = 0
    for state in opt.state.values():
        for key, value in state.items():
            if key == "step" or not isinstance(value, torch.Tensor):
                continue
            inner = [getattr(value, name) for name in ("codes", "scale", "qmap") if hasattr(value, name)]
            total += sum(t.numel() * t.element_size() for t in (inner or [value]))
    return total / n_params


def memory_runs(model, args, warmup, schedule, device):
    """The memory options (and torchao's, when installed) as Runs on copies of `model`."""
    kw = dict(lr=args.lr, betas=(0.9, 0.95))
    runs = []

    def add(label, dtype, make, scheduled_by_torch=False):
        copy_ = copy.deepcopy(model).to(dtype)
        opt = make(param_groups(copy_, args.weight_decay))
        runs.append(Run(label, copy_, opt, torch_schedule(opt, args, warmup) if scheduled_by_torch else None))

    add("lrfused 8-bit", torch.float32, lambda g: lrfused.AdamW(g, schedule=schedule, optim_bits=8, **kw))
    add("lrfused bf16 + stochastic rounding", torch.bfloat16,
        lambda g: lrfused.AdamW(g, schedule=schedule, stochastic_rounding=True, stochastic_rounding_seed=args.seed,
                                **kw))
    add("lrfused bf16 + fp32 master", torch.bfloat16,
        lambda g: lrfused.AdamW(g, schedule=schedule, master_weights=True, state_dtype=torch.float32, **kw))
    add("lrfused bf16 (round to nearest)", torch.bfloat16, lambda g: lrfused.AdamW(g, schedule=schedule, **kw))
    try:
        import bitsandbytes as bnb
    except ImportError:
        print("bitsandbytes is not installed: its run is left out")
    else:
        add("bitsandbytes AdamW8bit", torch.float32, lambda g: bnb.optim.AdamW8bit(g, **kw), scheduled_by_torch=True)
    try:
        import torchao.optim as ao
    except ImportError:
        print("torchao is not installed: its runs are left out")
        return runs
    add("torchao AdamW8bit", torch.float32, lambda g: ao.AdamW8bit(g, **kw), scheduled_by_torch=True)
    add("torchao bf16 + stochastic rounding", torch.bfloat16,
        lambda g: ao._AdamW(g, bf16_stochastic_round=True, **kw), scheduled_by_torch=True)
    return runs


def plot_losses(runs, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        other = "torchao" in run.label or "bitsandbytes" in run.label
        ax.plot(run.losses, label=run.label, linewidth=1.0, linestyle="--" if other else "-")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    tok = CharTokenizer(TEXT)
    data = tok.encode(TEXT)
    torch.manual_seed(args.seed)
    model = GPT(tok.vocab_size, args.context, args.layers, args.d_model, args.heads).to(device)
    reference = copy.deepcopy(model) if args.compare_torch else None
    n_params = sum(p.numel() for p in model.parameters())
    warmup, schedule = build_schedule(args)
    print(f"GPT: {args.layers} layers, d={args.d_model}, vocab {tok.vocab_size}, {n_params / 1e6:.2f}M params, "
          f"{args.steps} steps ({warmup} warmup + cosine) on {device}")

    opt = lrfused.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), schedule=schedule)
    runs = [Run("lrfused", model, opt)]
    if args.compare_torch:
        L = torch.optim.lr_scheduler
        topt = torch.optim.AdamW(param_groups(reference, args.weight_decay), lr=args.lr, betas=(0.9, 0.95))
        tsched = L.SequentialLR(topt, [L.LinearLR(topt, start_factor=1e-2, end_factor=1.0, total_iters=warmup),
                                       L.CosineAnnealingLR(topt, T_max=args.steps - warmup, eta_min=args.lr * 0.1)],
                                milestones=[warmup])
        runs.append(Run("torch  ", reference, topt, tsched))
    extra = memory_runs(model, args, warmup, schedule, device) if args.compare_memory else []
    runs[0].label = "lrfused fp32" if args.compare_memory else runs[0].label
    train(runs + extra, data, args, device)

    skip = min(5, args.steps // 4)  # the first steps allocate state and warm caches
    ours = runs[0]
    result = {"losses": ours.losses, "lrs": ours.lrs, "params": n_params,
              "step_ms": ours.median_ms(ours.step_times, skip), "opt_ms": ours.median_ms(ours.opt_times, skip)}
    if args.compare_memory:
        result["memory"] = {run.label: {"losses": run.losses, "final_loss": run.losses[-1],
                                        "state_bytes_per_param": state_bytes_per_param(run.opt, n_params)}
                            for run in [ours] + extra}
        tail = max(1, args.steps // 10)  # the mean loss of the last tenth of the steps: less noisy than one step
        base = statistics.fmean(ours.losses[-tail:])
        for label, r in result["memory"].items():
            r["final_mean_loss"] = statistics.fmean(r["losses"][-tail:])
            print(f"{label:36s} mean loss of the last {tail} steps {r['final_mean_loss']:.4f} "
                  f"({100 * (r['final_mean_loss'] / base - 1):+.2f}% vs fp32)   state "
                  f"{r['state_bytes_per_param']:.2f} bytes/param")
        if args.plot:
            plot_losses([ours] + extra, args.plot, f"GPT {n_params / 1e6:.2f}M params, {args.steps} steps, "
                                                     f"AdamW warmup+cosine, lr {args.lr:g}")
            print(f"loss curves: {args.plot}")
    prompt = tok.encode("Shall I ").to(device)[None]
    print("sample:", repr(tok.decode(model.generate(prompt, 40, args.context)[0])))
    if args.compare_torch:
        theirs = runs[1]
        diff = max(abs(a - b) for a, b in zip(ours.losses, theirs.losses))
        lr_diff = max(abs(a - b) / b for a, b in zip(ours.lrs, theirs.lrs))
        param_diff = max(float((p.detach() - q.detach()).abs().max())
                         for p, q in zip(model.parameters(), reference.parameters()))
        result.update(torch_losses=theirs.losses, torch_lrs=theirs.lrs, max_loss_diff=diff,
                      max_lr_rel_diff=lr_diff, max_param_diff=param_diff,
                      torch_step_ms=theirs.median_ms(theirs.step_times, skip),
                      torch_opt_ms=theirs.median_ms(theirs.opt_times, skip))
        result["step_speedup"] = result["torch_step_ms"] / result["step_ms"]
        result["opt_speedup"] = result["torch_opt_ms"] / result["opt_ms"]
        print(f"loss curves: max |lrfused - torch| = {diff:.3e} over {args.steps} steps; applied lr max rel "
              f"diff {lr_diff:.1e}; max |param diff| = {param_diff:.3e}")
        print(f"median step: lrfused {result['step_ms']:.2f} ms, torch {result['torch_step_ms']:.2f} ms "
              f"({result['step_speedup']:.2f}x); optimizer+schedule: lrfused {result['opt_ms']:.3f} ms, "
              f"torch {result['torch_opt_ms']:.3f} ms ({result['opt_speedup']:.2f}x)")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
