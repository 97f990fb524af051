"""Build hook: cffi out-of-line API mode modules from native/.

Metadata lives in pyproject.toml; setuptools only reads ``cffi_modules`` from here.
"""

from setuptools import setup

setup(cffi_modules=["native/build_itch.py:ffibuilder"])
