"""Which decoding order should the pyramid's context model use? Bits of fixed latents under context
networks of several orders, each trained for the same seconds (the entropy model alone).

    python benchmarks/context_orders.py [--seconds 100] [--base pyramid-b1] [--only checkerboard,wavefront] [--tag T]

The latents are the rounded encoder output of a shipped base at q2, q4 and q8: 192 crops of the
dataset regime's ``train`` split to train on, 64 of its ``heldout`` split to measure (128² each).
Every order gets a fresh network (two hidden layers as the codec's) trained with Adam (3e-3, 16 crops
a step, the three levels in turn) for ``--seconds``; the result is the discretized-Laplace estimate
of the heldout latents' bits per pixel. Orders (own-level neighbours a symbol may read; every order
also reads the parent's five values and the level's one-hot):

- ``checkerboard``: anchors none, the others their 4 anchor neighbours (pyramid codec versions 1–3);
- ``quad``: four phases on the 2×2 grid, each reading its 3×3 neighbours already decoded;
- ``two rows``: 8 neighbours of the two rows above (a row decodes at once);
- ``wavefront``: left, up-left, up, up-right (pyramid codec version 4; no tiles here);
- ``wavefront 10``, ``wavefront 10 h12``: the wavefront order reading 10 causal neighbours (two
  columns left, two rows up), hidden 16 and 12 wide;
- ``raster 12``: the 12 neighbours of a causal 5×5 window;
- ``wavefront h12``, ``wavefront h8``: the wavefront order with hidden layers 12 and 8 wide.

Writes ``benchmarks/results/context-orders[-T].{json,md}`` with command, commit, machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from archiver.bench.compare import machine  # noqa: E402
from archiver.codecs.pyramid.model import PyramidCodec, laplace_bits  # noqa: E402
from benchmarks.regimes import build_regime  # noqa: E402

QUALITIES = (2, 4, 8)
OFF3 = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
CROSS = [(-1, 0), (1, 0), (0, -1), (0, 1)]
WAVE10 = [(0, -1), (-1, -1), (-1, 0), (-1, 1), (0, -2), (-1, -2), (-2, -1), (-2, 0), (-2, 1), (-2, 2)]
#: name → (phase map or None for one causal phase, own-level offsets, hidden width)
ORDERS = {
    "checkerboard": ("checkerboard", CROSS, 16),
    "quad": ("quad", OFF3, 16),
    "two rows": (None, [(-1, dx) for dx in range(-2, 3)] + [(-2, -1), (-2, 0), (-2, 1)], 16),
    "wavefront": (None, [(0, -1), (-1, -1), (-1, 0), (-1, 1)], 16),
    # the same order with narrower hidden layers (the decoder's cost per latent is mostly the network)
    "wavefront h12": (None, [(0, -1), (-1, -1), (-1, 0), (-1, 1)], 12),
    "wavefront h8": (None, [(0, -1), (-1, -1), (-1, 0), (-1, 1)], 8),
    # more causal neighbours: every (dy, dx) with 2·dy + dx < 0 precedes (i, j) in the wavefront order
    "wavefront 10": (None, WAVE10, 16),
    "wavefront 10 h12": (None, WAVE10, 12),
    "raster 12": (None, [(dy, dx) for dy in (-2, -1) for dx in range(-2, 3)] + [(0, -2), (0, -1)], 24),
}


def _phase_map(kind: str, h: int, w: int) -> torch.Tensor:
    i, j = torch.arange(h).view(-1, 1), torch.arange(w).view(1, -1)
    if kind == "checkerboard":
        return ((i + j) % 2).expand(h, w)
    a, b = i % 2, j % 2
    return torch.where((a == 0) & (b == 0), 0, torch.where((a == 1) & (b == 1), 1, torch.where(a == 0, 2, 3))).expand(h, w)


def _shift(g: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The value at (i + dy, j + dx) of every position, 0 outside."""
    h, w = g.shape[-2:]
    p = F.pad(g, (2, 2, 2, 2))
    return p[..., 2 + dy : 2 + dy + h, 2 + dx : 2 + dx + w]


class OrderModel(nn.Module):
    """A context network per phase over the parent's five values, the offsets' values (0 where not
    yet decoded) and the level's one-hot; :meth:`bits` of a batch of grids."""

    def __init__(self, levels: int, phases: str | None, offsets: list, hidden: int) -> None:
        super().__init__()
        self.levels, self.phases, self.offsets = levels, phases, offsets
        n = 5 + len(offsets) + levels
        count = 1 if phases is None else (2 if phases == "checkerboard" else 4)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))
            for _ in range(count)
        )  # fmt: skip

    def _parent(self, grids, level):
        g = grids[level]
        h, w = g.shape[-2:]
        if level + 1 >= len(grids):
            return [torch.zeros_like(g)] * 5
        par = grids[level + 1]
        return [F.interpolate(_shift(par, dy, dx), scale_factor=2, mode="nearest")[..., :h, :w]
                for dy, dx in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))]  # fmt: skip

    def bits(self, grids: list[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for level, g in enumerate(grids):
            n, _, h, w = g.shape
            onehot = torch.zeros(n, self.levels, h, w)
            onehot[:, level] = 1
            parent = self._parent(grids, level)
            if self.phases is None:
                f = torch.cat(parent + [_shift(g, dy, dx) for dy, dx in self.offsets] + [onehot], 1)
                o = self.mlps[0](f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
                total = total + laplace_bits(g, o[:, :1], o[:, 1:]).sum()
                continue
            phase = _phase_map(self.phases, h, w)
            i, j = torch.arange(h).view(-1, 1), torch.arange(w).view(1, -1)
            for p in range(len(self.mlps)):
                mask = phase == p
                own = [_shift(g, dy, dx) * (phase[(i + dy).clamp(0, h - 1), (j + dx).clamp(0, w - 1)] < p).float()
                       for dy, dx in self.offsets]  # fmt: skip
                f = torch.cat(parent + own + [onehot], 1).permute(0, 2, 3, 1)[:, mask]
                o = self.mlps[p](f)
                total = total + laplace_bits(g.permute(0, 2, 3, 1)[:, mask], o[..., :1], o[..., 1:]).sum()
        return total


def _crops(split: str, count: int) -> torch.Tensor:
    folder = Path(f"/tmp/regime-dataset-{split}")
    if not folder.exists():
        build_regime("dataset", None, folder, split=split)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))[:count]]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


def _machine(m: dict) -> str:
    return f"{m['platform']}, {m['cores']} cores, torch {m['torch']}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=100.0)
    ap.add_argument("--base", default="pyramid-b1", help="shipped base whose encoder makes the latents")
    ap.add_argument("--only", default="", help="comma-separated order names (default: all)")
    ap.add_argument("--tag", default="", help="suffix of the result files' names")
    args = ap.parse_args()
    torch.manual_seed(0)
    from archiver.codecs.pyramid.bases import WEIGHTS_DIR, load_base
    from archiver.codecs.pyramid.plan import PyramidSpec

    meta, arrays = load_base(WEIGHTS_DIR / f"{args.base}.npz")
    spec = PyramidSpec.from_dict(meta["spec"])
    codec = PyramidCodec(spec)
    codec.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})

    def latents(x, q):
        steps = codec.steps(q)
        with torch.no_grad():
            return [torch.round(g / steps[i]) for i, g in enumerate(codec.encoder(x))]

    train, held = _crops("train", 192), _crops("heldout", 64)
    train_lat = {q: latents(train, q) for q in QUALITIES}
    held_lat = {q: latents(held, q) for q in QUALITIES}
    names = [n for n in ORDERS if not args.only or n in args.only.split(",")]
    rows = []
    for name in names:
        phases, offsets, hidden = ORDERS[name]
        model = OrderModel(spec.levels, phases, offsets, hidden)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        start, step = time.monotonic(), 0
        while time.monotonic() - start < args.seconds:
            q = QUALITIES[step % len(QUALITIES)]
            idx = torch.randint(0, train.shape[0], (16,))
            bpp = model.bits([g[idx] for g in train_lat[q]]) / (16 * train.shape[2] * train.shape[3])
            opt.zero_grad()
            bpp.backward()
            opt.step()
            step += 1
        with torch.no_grad():
            bpp = {q: float(model.bits(held_lat[q])) / (held.shape[0] * held.shape[2] * held.shape[3]) for q in QUALITIES}
        rows.append({"order": name, "steps": step, "bpp": bpp})
        print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    record = {
        "command": "python benchmarks/context_orders.py " + " ".join(sys.argv[1:]),
        "commit": commit.stdout.strip(), "machine": machine(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": rows,
    }  # fmt: skip
    out = REPO / "benchmarks" / "results"
    stem = "context-orders" + (f"-{args.tag}" if args.tag else "")
    (out / f"{stem}.json").write_text(json.dumps(record, indent=1) + "\n")
    ref = next((r for r in rows if r["order"] == "checkerboard"), rows[0])
    ref_name = ref["order"]
    lines = [
        "# Context orders: bits of fixed pyramid latents (entropy model alone)", "",
        f"- command: `{record['command']}`", f"- date: {record['date']}, commit {record['commit']}, machine: {_machine(record['machine'])}",
        f"- latents: base `{args.base}`'s encoder, rounded, q2/q4/q8; trained on 192 train-split crops, measured on 64 heldout crops (128²)",
        "", f"| order | steps | q2 bpp | q4 bpp | q8 bpp | vs {ref_name} (q2 / q4 / q8) |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        rel = " / ".join(f"{100 * (r['bpp'][q] / ref['bpp'][q] - 1):+.1f} %" for q in QUALITIES)
        lines.append(f"| {r['order']} | {r['steps']} | " + " | ".join(f"{r['bpp'][q]:.4f}" for q in QUALITIES) + f" | {rel} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
