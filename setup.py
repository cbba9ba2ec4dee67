"""Builds the compiled parts of the codecs; everything else is in pyproject.toml.

A codec folder (``src/archiver/codecs/<name>/``) may hold C files named ``_<module>.c``: each is
built as the module ``archiver.codecs.<name>._<module>``, with the folder's ``.h`` files as its
dependencies, and loaded by the codec itself (the pyramid codec's ``native.py`` loads
``_wavestep`` with ctypes). Every such build is optional: where no C compiler is found, pip goes on
without it and the codec uses its numpy path, which gives the same values, slower."""

from pathlib import Path

from setuptools import Extension, setup

CODECS = Path("src/archiver/codecs")


def codec_extensions() -> list[Extension]:
    out = []
    for source in sorted(CODECS.glob("*/_*.c")):
        folder = source.parent
        out.append(Extension(
            f"archiver.codecs.{folder.name}.{source.stem}",
            [source.as_posix()],
            depends=[h.as_posix() for h in sorted(folder.glob("*.h"))],
            extra_compile_args=["-O3"],
            optional=True,
        ))  # fmt: skip
    return out


setup(ext_modules=codec_extensions())
