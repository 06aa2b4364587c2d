"""Build the optional Cython accelerators in helix/_fast/.

Metadata lives in setup.cfg; this file only declares the extensions.  Each
accelerator is compiled from its single pure-Python source (``<name>_c.py``
links to ``<name>_py.py``; ``<name>_c.pxd`` adds C types).  If Cython or a C
compiler is missing, or ``HELIX_NO_EXTENSIONS=1`` is set, the build goes on
without them and Helix runs the pure-Python twins (``helix --version`` says so).
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

# protocol_c.py, exchange_c.py, conn_c.py and pool_c.py link to helix/server/protocol.py,
# helix/server/exchange.py, helix/client/connection.py and helix/client/pool.py.
FAST_MODULES = ["sse", "ewma", "shmlock", "head", "scan", "hist", "gate", "access",
                "price", "protocol", "exchange", "conn", "pool"]


class OptionalBuildExt(build_ext):
    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing, etc.
            self._warn(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc, ext.name)

    @staticmethod
    def _warn(exc, name="extensions"):
        sys.stderr.write(
            f"WARNING: could not compile {name} ({exc}); Helix will use its pure-Python twins.\n"
        )


def extensions():
    if os.environ.get("HELIX_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        sys.stderr.write("WARNING: Cython is not installed; building without extensions.\n")
        return []
    from setuptools import Extension

    def source(name):
        # A hand-written .pyx where C builtins are the point (shmlock: __atomic CAS).
        pyx = f"helix/_fast/{name}_c.pyx"
        return pyx if os.path.exists(pyx) else f"helix/_fast/{name}_c.py"

    exts = [
        # -ffp-contract=off: no fused multiply-add where the twin rounds each step (the
        # price and the latency table must give the pure twin's bits on FMA machines too).
        Extension(f"helix._fast.{name}_c", [source(name)],
                  extra_compile_args=["-O2", "-ffp-contract=off"])
        for name in FAST_MODULES
    ]
    return cythonize(exts, language_level=3, quiet=True)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
