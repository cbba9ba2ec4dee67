"""Scaling out: training steps/s with 1 vs 2 processes, the cost of an interruption, append vs repack.

    python benchmarks/scale.py [--studies processes,resume,append] [--limit 400] [--steps 3000]
                               [--time-limit 4m] [--src ../shared/data/dev]

All three use the ``dataset`` regime (128 × 128 crops of the dev photos) and run the archiver CLI in
fresh processes, one at a time:

- **processes**: ``pack --max-steps STEPS`` in one process (torch's default threads: every core) and
  under ``torchrun --nproc_per_node 2`` (one thread each, gloo). Training steps/s and crops/s come
  from the archive's own training summary (``steps`` / ``train_seconds``; every process draws a
  full batch, so two processes see twice the crops per step).
- **resume**: the same ``pack --max-steps STEPS --checkpoint-every 60s`` run uninterrupted, then
  killed with SIGKILL at 60% of the uninterrupted wall time and continued with ``--resume``. Time lost
  = killed run + resumed run − uninterrupted run (wall seconds); the two archives' PSNR, size and
  decoder weights are compared.
- **append**: the first 90% of the crops packed ``--appendable`` (``--time-limit``), the last 10%
  appended from the stored encoder and, for comparison, by latent search without it; then the whole
  set repacked with the same time limit. The appended crops' PSNR and latent bits per pixel are
  compared with the same crops' in the repack.

Writes ``benchmarks/results/scale.{json,md}``; studies not run keep their earlier results there
(each study records its own date and commit).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.rd import git_commit, machine  # noqa: E402
from benchmarks.regimes import DEFAULT_SRC_DIR, build_regime  # noqa: E402

#: Fraction of the uninterrupted run's wall time at which the resume study kills the pack.
KILL_AT = 0.6


def _env(threads: int | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _archiver(*args: str, processes: int = 1) -> list[str]:
    if processes == 1:
        return [sys.executable, "-m", "archiver", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "archiver", *args]  # fmt: skip


def _run(cmd: list[str], env: dict | None = None) -> float:
    """Wall seconds of ``cmd``; raises with its stderr's tail if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env or _env())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def _info(archive: Path) -> dict:
    from archiver.inspect import archive_info

    return archive_info(archive)


def _train_rates(archive: Path) -> dict:
    """Steps/s and crops/s of the pack that wrote ``archive``, from its training summary."""
    from archiver.container.reader import ArchiveReader

    info = _info(archive)
    with ArchiveReader(archive) as r:
        world = int(r.training.get("processes", 1))
        crop = int(r.training.get("crop", 0)) or info["config"]["train"]["crop"]
    tc = info["config"]["train"]
    batch = tc["batch"] * max(1, (tc["crop"] // crop) ** 2)  # as training scales it for small crops
    steps, seconds = info["steps"], info["train_seconds"]
    return {"processes": world, "steps": steps, "train_seconds": seconds, "steps_per_s": steps / seconds,
            "crops_per_s": steps * batch * world / seconds, "mean_psnr": info["mean_psnr"], "bpp": info["bpp"]}  # fmt: skip


def study_processes(src: Path, work: Path, steps: int) -> dict:
    """Training throughput of one process (all cores) and of two torchrun processes (one core each)."""
    rows = []
    for processes in (1, 2):
        archive = work / f"p{processes}.nca"
        args = ["pack", str(src), "-o", str(archive), "--max-steps", str(steps), "--codec", "autoencoder", "--quiet", "--force"]
        wall = _run(_archiver(*args, processes=processes), _env(1 if processes > 1 else None))
        rows.append({**_train_rates(archive), "wall_s": wall})
    return {"steps": steps, "rows": rows}


def _checkpoint_step(folder: Path) -> int | None:
    import torch

    try:
        return int(torch.load(folder / "train.pt", weights_only=False)["step"])
    except Exception:  # none yet, or being replaced
        return None


def study_resume(src: Path, work: Path, steps: int, every: str = "60s") -> dict:
    """Uninterrupted pack vs one killed at :data:`KILL_AT` of its wall time and resumed."""
    whole, cut = work / "whole.nca", work / "cut.nca"
    base = ["pack", str(src), "--max-steps", str(steps), "--codec", "autoencoder", "--quiet", "--force", "--checkpoint-every", every]
    whole_s = _run(_archiver(*base, "-o", str(whole)))
    proc = subprocess.Popen(_archiver(*base, "-o", str(cut)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=_env(), start_new_session=True)  # fmt: skip
    t0 = time.perf_counter()
    try:
        proc.wait(timeout=KILL_AT * whole_s)
        raise RuntimeError("the pack to interrupt finished before it was killed")
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed_s = time.perf_counter() - t0
    step_at_kill = _checkpoint_step(work / ".cut.nca.resume")
    resumed_s = _run(_archiver(*base, "-o", str(cut), "--resume"))
    a, b = _info(whole), _info(cut)
    from archiver.container.reader import ArchiveReader

    with ArchiveReader(whole) as ra, ArchiveReader(cut) as rb:
        same = all(np.array_equal(v, rb.model_arrays()[k]) for k, v in ra.model_arrays().items())
    return {
        "steps": steps, "checkpoint_every": every, "uninterrupted_s": whole_s, "killed_after_s": killed_s,
        "checkpoint_step_at_kill": step_at_kill, "resumed_s": resumed_s,
        "lost_s": killed_s + resumed_s - whole_s, "same_decoder": same,
        "uninterrupted": {"psnr": a["mean_psnr"], "bytes": a["archive_bytes"]},
        "resumed": {"psnr": b["mean_psnr"], "bytes": b["archive_bytes"]},
    }  # fmt: skip


def _image_rows(archive: Path, names: set[str]) -> dict[str, tuple[float, int, int]]:
    """name → (PSNR dB, latent bytes, pixels) of the named image entries of ``archive``."""
    from archiver.container.format import EntryKind
    from archiver.container.reader import ArchiveReader
    from archiver.container.records import decode_image_record

    out = {}
    with ArchiveReader(archive) as r:
        for e in r.entries:
            if e.kind is EntryKind.IMAGE and e.path.decode().split("/")[-1] in names:
                latent = decode_image_record(r.read_record(e)).latent
                out[e.path.decode().split("/")[-1]] = (e.psnr, len(latent), e.width * e.height)
    return out


def _summary(rows: dict[str, tuple[float, int, int]]) -> dict:
    psnr = float(np.mean([v[0] for v in rows.values()]))
    bpp = 8 * sum(v[1] for v in rows.values()) / sum(v[2] for v in rows.values())
    return {"images": len(rows), "mean_psnr": psnr, "latent_bpp": bpp}


def study_append(src: Path, work: Path, time_limit: str) -> dict:
    """The last 10% of the images appended (encoder / search) vs the same images in a repack."""
    from archiver.append import append

    files = sorted(src.glob("*.png"))
    split = len(files) * 9 // 10
    first, last = work / "first", work / "last"
    for folder, part in ((first, files[:split]), (last, files[split:])):
        folder.mkdir()
        for f in part:
            shutil.copy(f, folder / f.name)
    names, rest = {f.name for f in files[split:]}, {f.name for f in files[:split]}
    packed = work / "first.nca"
    pack_s = _run(_archiver("pack", str(first), "-o", str(packed), "--time-limit", time_limit, "--codec", "autoencoder", "--quiet", "--appendable"))
    rows = {}
    for method in ("encoder", "search"):
        archive = work / f"append-{method}.nca"
        shutil.copy(packed, archive)
        report = append(archive, last, use_encoder=method == "encoder")
        rows[method] = {"appended": _summary(_image_rows(archive, names)), "rest": _summary(_image_rows(archive, rest)),
                        "seconds": report.seconds, "steps": report.steps, "archive_bytes": report.archive_bytes}  # fmt: skip
    repack = work / "repack.nca"
    repack_s = _run(_archiver("pack", str(src), "-o", str(repack), "--time-limit", time_limit, "--codec", "autoencoder", "--quiet"))
    rows["repack"] = {"appended": _summary(_image_rows(repack, names)), "rest": _summary(_image_rows(repack, rest)),
                      "seconds": repack_s, "steps": _info(repack)["steps"], "archive_bytes": repack.stat().st_size}  # fmt: skip
    from archiver.container.reader import ArchiveReader

    with ArchiveReader(packed) as r:
        encoder_bytes = r.stored_bytes("model/encoder")
    return {"images_packed": split, "images_appended": len(files) - split, "time_limit": time_limit,
            "first_pack_s": pack_s, "encoder_bytes": encoder_bytes, "rows": rows}  # fmt: skip


def _markdown(result: dict) -> str:
    md = [f"# Scaling out ({result['machine']['cores']} cores; dataset regime, {result['images']} crops of 128 × 128)", ""]
    for study in ("processes", "resume", "append"):
        if study in result:
            md.append(f"- {study}: {result[study]['date'][:10]}, commit {result[study]['commit']}, "
                      f"`{result[study]['command']}`")  # fmt: skip
    md.append("")
    if "processes" in result:
        p = result["processes"]
        md += ["## Training throughput, 1 vs 2 processes", "",
               f"`pack --max-steps {p['steps']}`; one process uses every core, torchrun's two one core each.", "",
               "| processes | steps/s | crops/s | train s | wall s | mean PSNR (dB) | bpp |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in p["rows"]:
            md.append(f"| {r['processes']} | {r['steps_per_s']:.2f} | {r['crops_per_s']:.1f} | {r['train_seconds']:.0f} | "
                      f"{r['wall_s']:.0f} | {r['mean_psnr']:.2f} | {r['bpp']:.4f} |")  # fmt: skip
        md.append("")
    if "resume" in result:
        r = result["resume"]
        md += ["## Interruption and resume", "",
               f"`pack --max-steps {r['steps']} --checkpoint-every {r['checkpoint_every']}`, killed (SIGKILL) after "
               f"{r['killed_after_s']:.0f} s (last checkpoint at step {r['checkpoint_step_at_kill']}), then `--resume`.", "",
               "| run | wall s | mean PSNR (dB) | archive bytes |", "|---|---|---|---|",
               f"| uninterrupted | {r['uninterrupted_s']:.0f} | {r['uninterrupted']['psnr']:.3f} | {r['uninterrupted']['bytes']:,} |",
               f"| killed + resumed | {r['killed_after_s']:.0f} + {r['resumed_s']:.0f} | {r['resumed']['psnr']:.3f} | "
               f"{r['resumed']['bytes']:,} |", "",
               f"Time lost to the interruption: **{r['lost_s']:.0f} s**; same decoder weights: {r['same_decoder']}. "
               f"A kill loses the training since the last checkpoint (at most {r['checkpoint_every']}) and one "
               "start-up; a measured loss below that is run-to-run noise of this machine.", ""]  # fmt: skip
    if "append" in result:
        a = result["append"]
        md += ["## Append vs repack", "",
               f"{a['images_packed']} crops packed `--appendable --time-limit {a['time_limit']}` "
               f"({a['first_pack_s']:.0f} s; the encoder adds {a['encoder_bytes']:,} bytes), then "
               f"{a['images_appended']} more appended, or everything repacked with the same time limit (a "
               "second training: its quality differs from the first by training noise too). *New* are the "
               f"{a['images_appended']} later crops, *first* the {a['images_packed']} others, in the same archive.", "",
               "| how | steps / image | seconds | new: PSNR (dB) | new: latent bpp | first: PSNR (dB) | first: latent bpp "
               "| archive bytes |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, r in a["rows"].items():
            steps = f"{r['steps']}" if name != "repack" else f"{r['steps']} (training)"
            new, old = r["appended"], r["rest"]
            md.append(f"| {name} | {steps} | {r['seconds']:.0f} | {new['mean_psnr']:.2f} | {new['latent_bpp']:.4f} | "
                      f"{old['mean_psnr']:.2f} | {old['latent_bpp']:.4f} | {r['archive_bytes']:,} |")  # fmt: skip
        md.append("")
    return "\n".join(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", default="processes,resume,append")
    ap.add_argument("--src", type=Path, default=DEFAULT_SRC_DIR)
    ap.add_argument("--limit", type=int, default=400, help="dataset-regime crops")
    ap.add_argument("--steps", type=int, default=3000, help="training steps of the processes study")
    ap.add_argument("--resume-steps", type=int, default=6000, help="training steps of the resume study")
    ap.add_argument("--every", default="60s", help="checkpoint interval of the resume study")
    ap.add_argument("--time-limit", default="4m", help="training time of each pack in the append study")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    studies = [s for s in args.studies.split(",") if s]
    unknown = set(studies) - {"processes", "resume", "append"}
    if unknown:
        ap.error(f"unknown studies: {', '.join(sorted(unknown))}")
    started = dt.datetime.now(dt.timezone.utc)
    result = {"date": started.isoformat(timespec="seconds"), "commit": git_commit(), "machine": machine(),
              "command": "python benchmarks/scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "images": args.limit}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp:
        work = Path(tmp)
        src = work / "src"
        build_regime("dataset", args.src, src, limit=args.limit)
        for study in studies:
            print(f"{study} …", file=sys.stderr, flush=True)
            folder = work / study
            folder.mkdir()
            if study == "processes":
                result[study] = study_processes(src, folder, args.steps)
            elif study == "resume":
                result[study] = study_resume(src, folder, args.resume_steps, args.every)
            else:
                result[study] = study_append(src, folder, args.time_limit)
            result[study].update(date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                 commit=result["commit"], command=result["command"])  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "scale.json"
    if previous.exists():  # studies not run this time keep their earlier results (each carries its own commit)
        old = json.loads(previous.read_text())
        result = {**{k: v for k, v in old.items() if k in ("processes", "resume", "append")}, **result}
    (args.out / "scale.json").write_text(json.dumps(result, indent=1))
    md = _markdown(result)
    (args.out / "scale.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
