"""Onload: run apps accelerated (launcher), profiles of ``EF_*`` settings, and detection.

``efsdk onload run`` / ``profile`` / ``status`` are the CLI face; from Python::

    from efsdk.onload import onload_status, socket_accelerated, resolve
"""

from efsdk.onload.detect import OnloadStatus, onload_is_present, onload_status, socket_accelerated
from efsdk.onload.launcher import OnloadUnavailable, compose_env
from efsdk.onload.profiles import Profile, ProfileError, ProfileNotFound, load_profile_file, resolve

__all__ = [
    "OnloadStatus",
    "OnloadUnavailable",
    "Profile",
    "ProfileError",
    "ProfileNotFound",
    "compose_env",
    "load_profile_file",
    "onload_is_present",
    "onload_status",
    "resolve",
    "socket_accelerated",
]
