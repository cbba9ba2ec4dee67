"""What the CLI prints after ``pack`` and ``append`` (a rich console is passed in: the library
never prints)."""

from __future__ import annotations

__all__ = ["fmt_bytes", "print_other_entries", "print_pack_report"]


def fmt_bytes(n: float) -> str:
    """``n`` bytes for people: B, KiB, MiB or GiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def print_other_entries(out, report) -> None:
    """The summary's last lines: what was not coded, and why each file was stored as is."""
    out.print(f"  {report.files} files stored as is, {report.folders} folders, {report.symlinks} symlinks")
    for name, reason in report.stored_as_is:
        out.print(f"    as is: {name}: {reason}", markup=False, highlight=False)


def print_pack_report(out, report) -> None:
    """The summary of a finished pack: sizes, training, the options that did something, what was
    stored as is."""
    t = report.training
    out.print(
        f"[bold]{report.archive}[/]: {fmt_bytes(report.archive_bytes)} from {fmt_bytes(report.input_bytes)} "
        f"(ratio {report.ratio:.1f}:1) in {report.seconds:.0f} s"
    )
    if report.images:
        out.print(
            f"  {report.images} images coded, {report.pixels / 1e6:.2f} Mpx, {report.bpp:.3f} bpp with the model, "
            f"mean PSNR {report.mean_psnr:.2f} dB; trained {t['steps']} steps in {t['train_seconds']:.0f} s "
            f"(stopped: {t['stop_reason']}"
            + (f"; warm start: {t['warm_start']['name']}" if t.get("warm_start") else "") + ")"
        )
    if "denoiser" in t:
        d = t["denoiser"]
        verdict = "kept" if d["kept"] else "not kept (it did not pay for its bytes)"
        out.print(f"  denoiser: {verdict}: {d['gain_db']:+.3f} dB for {d['bytes']} bytes")
    _print_rate(out, t)
    _print_time(out, t)
    if "gan" in t:
        g = t["gan"]
        if g["start_step"] is None:
            out.print("  gan: the adversarial phase never started (training ended first)")
        elif g["fell_back_at"] is not None:
            out.print(f"  gan: held-back PSNR fell more than the margin at step {g['fell_back_at']}: "
                      "went back to the last good checkpoint and ended the adversarial phase")  # fmt: skip
        else:
            out.print(f"  gan: adversarial from step {g['start_step']} ({g['disc_steps']} discriminator steps)")
    if t.get("perceptual"):
        p = t["perceptual"]
        out.print(f"  perceptual: {p['kind']} in the loss (weight {p['weight']:g}, last distance {p['last_distance']})")
    if t.get("processes", 1) > 1:
        out.print(f"  trained by {t['processes']} processes (torchrun, data parallel)")
    if t.get("appendable"):
        a = t["appendable"]
        out.print(f"  appendable: the encoder is stored ({fmt_bytes(a['encoder_bytes'])}, {a['stored']}): "
                  "append starts new images from it")  # fmt: skip
    print_other_entries(out, report)


def _print_time(out, t: dict) -> None:
    """How ``--time-limit`` was split, and what it cut."""
    b, r = t.get("time_budget"), t.get("refine")
    if b is None:  # packed before the time limit bounded the whole pack
        if r and r["max_steps"] and r["mean_steps"] < r["max_steps"]:
            out.print(f"  refinement: {r['mean_steps']:.1f} of {r['max_steps']} steps per image on average, "
                      f"to stay within {r['budget_seconds']:.0f} s")  # fmt: skip
        return
    denoiser = f", denoiser {b['denoiser_s']:.0f} s" if "denoiser_s" in b else ""
    out.print(f"  time limit {b['limit_s']:.0f} s: training {b['train_s']:.0f} s, refinement {b['refine_s']:.0f} s"
              f"{denoiser}, coding and writing {b['reserve_s']:.0f} s reserved")  # fmt: skip
    annealed = (r or {}).get("annealed") or {}
    if annealed.get("images"):
        searched = r.get("searched", 0)
        out.print(f"    annealed {annealed['images']} images, {annealed['mean_steps']:.0f} steps per batch on average "
                  f"({annealed['seconds']:.0f} s)" + (f"; {searched} searched" if searched else ""))  # fmt: skip
    if t.get("tails"):
        out.print(f"    {t['tails']['images']} images keep their own tail (last-layer delta, {t['tails']['bytes']} bytes in all)")
    for cut in b["cut"]:
        out.print(f"    cut: {cut}", markup=False, highlight=False)


def _print_rate(out, t: dict) -> None:
    """What ``--target-psnr`` / ``--max-bytes`` did."""
    if "target" in t:
        g = t["target"]
        out.print(f"  target {g['psnr']:g} dB: lowest image {g['min_psnr']:.2f} dB, gain codes {g['gain_codes']['min']}"
                  f"…{g['gain_codes']['max']}")  # fmt: skip
        for miss in g["unreached"][:10]:
            out.print(f"    below the target: {miss['path']}: {miss['psnr']:.2f} dB (the codec's best)", markup=False, highlight=False)
        if len(g["unreached"]) > 10:
            out.print(f"    … and {len(g['unreached']) - 10} more below the target")
    if "budget" in t:
        b = t["budget"]
        out.print(f"  budget {b['max_bytes']:,} bytes: steps × 2^{b['log2_gain']:+.3f}, fitted in {b['trials']} trials")
        if b.get("finer") or b.get("coarser"):
            out.print(f"    {b.get('finer', 0)} images nudged finer, {b.get('coarser', 0)} coarser")
        if b.get("short"):
            out.print(f"    more than 1 % under the budget: {b['short']}")
