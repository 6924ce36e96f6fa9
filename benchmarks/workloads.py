"""Parameter lists to benchmark, generated from shapes (nothing is downloaded).

A workload is a name and a list of shapes. Named ones:

  large        one tensor of 16M (2^24) elements
  1000x16K     1 000 tensors of 16 384 elements
  10000x100    10 000 tensors of 100 elements
  gpt2-small   the 148 trainable tensors of GPT-2 small (124 439 808 params, tied lm_head counted once)
  resnet50     the 161 trainable tensors of torchvision's ResNet-50 (25 557 032 params; BN running
               stats are buffers, not parameters)
  sweep        one tensor per size in --sweep (default 1e3 .. 1e8 on CPU, .. 1e9 on CUDA)

Any `KxN` spec (N may end in K or M, binary) is also accepted, e.g. `4x1000` or `64x1M`.
"""
import math
import re

K = 1024
M = 1024 * 1024


class Workload:
    def __init__(self, name, shapes, family=None):
        self.name = name
        self.shapes = [tuple(s) for s in shapes]
        self.family = family or name

    @property
    def num_params(self):
        return sum(math.prod(s) for s in self.shapes)

    @property
    def num_tensors(self):
        return len(self.shapes)

    def __repr__(self):
        return f"Workload({self.name!r}, {self.num_tensors} tensors, {self.num_params} params)"


def gpt2_small_shapes(n_layer=12, d=768, vocab=50257, n_ctx=1024):
    shapes = [(vocab, d), (n_ctx, d)]  # wte (tied with lm_head), wpe
    for _ in range(n_layer):
        shapes += [
            (d,), (d,),                    # ln_1
            (d, 3 * d), (3 * d,),          # attn.c_attn (Conv1D layout)
            (d, d), (d,),                  # attn.c_proj
            (d,), (d,),                    # ln_2
            (d, 4 * d), (4 * d,),          # mlp.c_fc
            (4 * d, d), (d,),              # mlp.c_proj
        ]
    shapes += [(d,), (d,)]  # ln_f
    return shapes


def resnet50_shapes(layers=(3, 4, 6, 3), num_classes=1000):
    shapes = [(64, 3, 7, 7), (64,), (64,)]  # conv1, bn1
    inplanes = 64
    for stage, blocks in enumerate(layers):
        width = 64 * 2 ** stage
        for b in range(blocks):
            shapes += [(width, inplanes, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(width * 4, width, 1, 1), (width * 4,), (width * 4,)]
            if b == 0:
                shapes += [(width * 4, inplanes, 1, 1), (width * 4,), (width * 4,)]
            inplanes = width * 4
    shapes += [(num_classes, 2048), (num_classes,)]
    return shapes


def _parse_count(text):
    text = text.strip()
    mult = 1
    if text[-1] in "kK":
        mult, text = K, text[:-1]
    elif text[-1] in "mM":
        mult, text = M, text[:-1]
    value = float(text) * mult
    if value < 1 or value != int(value):
        raise ValueError(f"bad element count {text!r}")
    return int(value)


def format_count(n):
    """1000 -> '1e3', 3000000 -> '3e6', 1234 -> '1234'"""
    e = 0
    m = n
    while m >= 10 and m % 10 == 0:
        m //= 10
        e += 1
    return f"{m}e{e}" if m < 10 and e > 0 else str(n)


def parse_sizes(text):
    """'1e3,1e4,3e5' -> [1000, 10000, 300000]"""
    out = []
    for tok in text.split(","):
        tok = tok.strip()
        if tok:
            v = float(tok)
            if v < 1 or v != int(v):
                raise ValueError(f"bad sweep size {tok!r}")
            out.append(int(v))
    return out


NAMED = ("large", "1000x16K", "10000x100", "gpt2-small", "resnet50", "sweep")


def build(names, sweep_sizes):
    """Expand workload names into Workload objects (sweep -> one per size)."""
    out = []
    for name in names:
        if name == "large":
            out.append(Workload("large", [(16 * M,)]))
        elif name == "gpt2-small":
            out.append(Workload("gpt2-small", gpt2_small_shapes()))
        elif name == "resnet50":
            out.append(Workload("resnet50", resnet50_shapes()))
        elif name == "sweep":
            for n in sweep_sizes:
                out.append(Workload(f"sweep-{format_count(n)}", [(n,)], family="sweep"))
        else:
            m = re.fullmatch(r"(\d+)x(\d+(?:\.\d+)?[kKmM]?)", name)
            if not m:
                raise ValueError(f"unknown workload {name!r}; choose from {', '.join(NAMED)} or KxN")
            count, size = int(m.group(1)), _parse_count(m.group(2))
            out.append(Workload(name, [(size,)] * count))
    return out
