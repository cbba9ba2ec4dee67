"""Build of the one compiled part: the pyramid coder's wavefront step (``_wavestep.c``), loaded
with ctypes. It is optional: where no C compiler is found the build goes on without it and the
decoder uses its numpy path, which gives the same values (everything else is in pyproject.toml)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "archiver.codecs.pyramid._wavestep",
            ["src/archiver/codecs/pyramid/_wavestep.c"],
            depends=["src/archiver/codecs/pyramid/_wavestep_net.h"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
