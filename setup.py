"""Build hook: cffi out-of-line API mode modules from native/.

Metadata lives in pyproject.toml; setuptools only reads ``cffi_modules`` from here.
"""

import sys

from setuptools import setup

CFFI_MODULES = ["native/build_itch.py:ffibuilder"]
if sys.platform.startswith("linux"):  # frame sources use Linux-only socket APIs (recvmmsg, AF_PACKET)
    CFFI_MODULES.append("native/build_sources.py:ffibuilder")

setup(cffi_modules=CFFI_MODULES)
