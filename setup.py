"""Build glue only: map the source folders onto the ``slipstream`` package and
compile the Cython accelerators in ``ext/``.  Metadata lives in pyproject.toml."""

from setuptools import Extension, setup

C_FLAGS = ["-O3"]

extensions = [
    Extension("slipstream.ext._segmap_c", ["ext/_segmap_c.pyx"], extra_compile_args=C_FLAGS),
    Extension("slipstream.ext._zipfmt_c", ["ext/_zipfmt_c.pyx"], extra_compile_args=C_FLAGS),
    Extension(
        "slipstream.ext._digest_c",
        ["ext/_digest_c.pyx", "ext/csrc/crc.c"],
        include_dirs=["ext/csrc"],
        depends=["ext/csrc/crc.h"],
        extra_compile_args=C_FLAGS,
    ),
]

setup(
    package_dir={
        "slipstream": "core",
        "slipstream.ext": "ext",
        "slipstream.server": "server",
        "slipstream.server.routes": "server/routes",
    },
    packages=["slipstream", "slipstream.ext", "slipstream.server", "slipstream.server.routes"],
    package_data={
        "slipstream": ["py.typed"],
        "slipstream.ext": ["*.pyx", "*.pxi", "csrc/*.c", "csrc/*.h"],
    },
    ext_modules=extensions,
)
