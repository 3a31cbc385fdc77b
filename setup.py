"""Build glue only: map the source folders onto the ``slipstream`` package and
compile the Cython accelerators in ``ext/``.  Metadata lives in pyproject.toml."""

from setuptools import Extension, find_packages, setup

C_FLAGS = ["-O3"]

extensions = [
    Extension("slipstream.ext._segmap_c", ["ext/_segmap_c.pyx"], extra_compile_args=C_FLAGS),
    Extension("slipstream.ext._httphead_c", ["ext/_httphead_c.pyx"], extra_compile_args=C_FLAGS),
    Extension("slipstream.ext._listing_c", ["ext/_listing_c.pyx"], extra_compile_args=C_FLAGS),
    Extension("slipstream.ext._zipfmt_c", ["ext/_zipfmt_c.pyx"], extra_compile_args=C_FLAGS),
    Extension(
        "slipstream.ext._digest_c",
        ["ext/_digest_c.pyx", "ext/csrc/crc.c"],
        include_dirs=["ext/csrc"],
        depends=["ext/csrc/crc.h", "ext/_crc.pxi"],
        extra_compile_args=C_FLAGS,
    ),
    Extension(
        "slipstream.ext._relay_c",
        ["ext/_relay_c.pyx", "ext/csrc/crc.c"],
        include_dirs=["ext/csrc"],
        depends=["ext/csrc/crc.h", "ext/_crc.pxi"],
        extra_compile_args=C_FLAGS,
    ),
]

# Each top-level folder is one package tree; its subpackages (core/http, core/zip, ...,
# server/routes) follow from the folder layout, so a new subpackage needs no line here.
PACKAGE_DIRS = {"slipstream": "core", "slipstream.ext": "ext", "slipstream.server": "server"}
packages = [
    f"{name}.{sub}" if sub else name
    for name, folder in PACKAGE_DIRS.items()
    for sub in ["", *find_packages(folder)]
]

setup(
    package_dir=PACKAGE_DIRS,
    packages=packages,
    package_data={
        "slipstream": ["py.typed"],
        "slipstream.server": ["web/*.html", "web/*.css", "web/*.js"],
        "slipstream.ext": ["*.pyx", "*.pxi", "csrc/*.c", "csrc/*.h"],
    },
    ext_modules=extensions,
)
