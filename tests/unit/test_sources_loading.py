"""How optional backend modules are loaded: absent is an answer, stale is a clear error."""

from __future__ import annotations

import pytest

from efsdk.errors import NativeError
from efsdk.sources import base
from efsdk.sources.base import check_constants, load_optional_module


def test_an_absent_module_is_returned_with_its_import_error():
    ffi, lib, err = load_optional_module("efsdk._native_nonexistent", "v", 1, "rebuild", {})
    assert ffi is None and lib is None and isinstance(err, ImportError)


@pytest.mark.skipif(base._lib is None, reason="efsdk._native_sources not built")
def test_a_stale_version_or_constant_names_what_differs():
    lib = base._lib
    ffi, got, err = load_optional_module("efsdk._native_sources", "efsdk_sources_version",
                                         base.EXPECTED_NATIVE_VERSION, "x", {"EFSDK_POLL_RELEASE": base.POLL_RELEASE})  # fmt: skip
    assert got is lib and err is None
    with pytest.raises(NativeError, match=r"is stale \(version .*expected 999\): rebuild it \(python build\.py\)"):
        load_optional_module("efsdk._native_sources", "efsdk_sources_version", 999, "python build.py", {})
    with pytest.raises(NativeError, match=r"'EFSDK_POLL_RELEASE': 1\} differ .*rebuild it \(pip install \.\)"):
        check_constants(lib, "efsdk._native_sources", {"EFSDK_POLL_RELEASE": 2})
