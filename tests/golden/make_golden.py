"""Regenerate the golden archive of the current format version (only when the format changes!).

    python tests/golden/make_golden.py                  # the autoencoder (the default codec)
    python tests/golden/make_golden.py --codec pyramid  # another codec: v<N>-<codec>-mixed.nca
    python tests/golden/make_golden.py --codec pyramid --delta  # from the shipped base, stored as
                                                               # its difference: v<N>-<codec>-delta-mixed.nca
                                                               # (-delta-graph-: the base's graph named,
                                                               # pyramid codec version 3; with the
                                                               # wavefront default, -wavefront-: version 4;
                                                               # -c5-: codec version 5 and later, named)
    python tests/golden/make_golden.py --codec pyramid --delta --target 30  # per-image gains (pyramid
                                                               # version 2): v<N>-<codec>-target-mixed.nca
    python tests/golden/make_golden.py --codec pyramid --delta --tails  # per-image tails (pyramid
                                                               # version 6), every annealed image keeping
                                                               # its own: v<N>-<codec>-c6-tails-…

Old versions' files must stay as they are: tests/container/test_golden.py checks that they still open,
list and decode to exactly the pixels measured when they were written. The tree grew with version 3
(``sub/icc_a.png``, ``sub/icc_b.png``: an image group and a shared metadata blob); older archives
hold the tree of their day.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from conftest import make_icc, smooth_image  # noqa: E402

from archiver.config import ModelConfig, config_for_quality  # noqa: E402
from archiver.container.format import FORMAT_VERSION  # noqa: E402
from archiver.inspect import list_entries  # noqa: E402
from archiver.pack import pack  # noqa: E402


def build(root: Path) -> None:
    rng = np.random.default_rng(7)
    (root / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    Image.fromarray(smooth_image(rng, 37, 29)).save(root / "rgb.png")
    Image.fromarray(smooth_image(rng, 20, 24)[..., 1]).save(root / "sub" / "gray.png")
    (root / "sub" / "readme.txt").write_bytes(b"golden archive, format version 1\n")
    # Since version 3: two images of one shape (one group) sharing one ICC profile (stored once).
    icc = make_icc()
    Image.fromarray(smooth_image(rng, 30, 30)).save(root / "sub" / "icc_a.png", icc_profile=icc)
    Image.fromarray(smooth_image(rng, 31, 28)).save(root / "sub" / "icc_b.png", icc_profile=icc)


def _force_tails() -> None:
    """The golden's images are far too small for a tail to pay: anneal them anyway and keep every
    tail learned, so that the file holds tails."""
    from archiver.codecs.pyramid import anneal, tail_fit

    anneal.MIN_STEPS, anneal.STEPS_PER_TRIAL, tail_fit.TAIL_MIN_PIXELS = 4, 2, 0
    choose = tail_fit.choose_tails

    def keep_all(losses, run, y, pixels):
        choose(losses, run, y, pixels)
        run.tails.kept = [run.tails.data(i) for i in range(len(y))]

    tail_fit.choose_tails = keep_all


def main() -> None:
    if "--codec" in sys.argv:  # python tests/golden/make_golden.py --codec pyramid
        codec = sys.argv[sys.argv.index("--codec") + 1]
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "src"
            build(src)
            # a step cap, so that the latents carry real symbols whatever the machine's speed; from
            # scratch and self-contained unless --delta (which needs a released base codec)
            delta = "--delta" in sys.argv
            target = float(sys.argv[sys.argv.index("--target") + 1]) if "--target" in sys.argv else None
            cfg = config_for_quality(8, time_limit=120, max_steps=200, seed=0, codec=codec, refine_steps=3,
                                     warm_start=delta, target_psnr=target)  # fmt: skip
            kind = "-target" if target else "-delta" if delta else ""
            if codec == "pyramid":
                from archiver.codecs.pyramid.plan import PYRAMID_PRESETS

                spec = PYRAMID_PRESETS["default"]
                if delta:  # since pyramid codec version 3 a base that ships its graph is named, not stored
                    from archiver.codecs.pyramid.bases import shipped_graph
                    from archiver.codecs.pyramid.base import find_pyramid_base

                    base = find_pyramid_base(spec)
                    kind += "-graph" if base is not None and shipped_graph(base.id) else ""
                if spec.context != "checkerboard":  # pyramid codec version 4: v<N>-pyramid-wavefront-…
                    kind = f"-{spec.context}{kind}"
                from archiver.codecs.pyramid.versions import PLAIN_LAYOUT_SINCE, WRITES

                if "--tails" in sys.argv:  # v<N>-pyramid-c6-tails-…: every image anneals and keeps a tail
                    from archiver.codecs.pyramid.versions import TAIL_SINCE

                    _force_tails()
                    kind = f"-c{TAIL_SINCE}-tails{kind}"
                elif WRITES >= PLAIN_LAYOUT_SINCE:  # v<N>-pyramid-c5-…: the codec version it writes
                    kind = f"-c{WRITES}{kind}"
            out = HERE / f"v{FORMAT_VERSION}-{codec}{kind}-mixed.nca"
            if out.exists():
                sys.exit(f"{out} exists: old versions' files must stay as they are")
            pack(src, out, cfg, force=True)
            (out.with_suffix(".json")).write_text(json.dumps(list_entries(out), indent=1) + "\n")
            print(out, out.stat().st_size, "bytes")
        return

    # Two small images never pay for context tables, so the fit would keep the per-channel model;
    # the golden file must cover the context coder (version 2), so it is made with S = K = 2.
    import functools

    import archiver.codec.context as context

    context.fit_context_tables = functools.partial(context.fit_context_tables, candidates=[(2, 2)])
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        build(src)
        cfg = config_for_quality(6, time_limit=5, seed=0)
        cfg = dataclasses.replace(cfg, model=ModelConfig(latent_channels=8, widths=(16, 16, 8, 8), res_blocks=1))
        out = HERE / f"v{FORMAT_VERSION}-mixed.nca"
        pack(src, out, cfg, force=True)
        rows = list_entries(out)
        (HERE / f"v{FORMAT_VERSION}-mixed.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(out, out.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
