"""Per-device profiles: device facts plus deployment settings, read from ``profiles/*.yaml``.

A profile answers two questions for one board or machine:

* what the hardware can do (``profile.device``: peak TFLOP/s per precision, DRAM bandwidth,
  memory, DLA cores), which the roofline and the benchmark report use, and
* how edgeseg deploys on it by default (``profile.deploy``, ``profile.calibration``,
  ``profile.power`` on Jetson, ``profile.bench``), which command-line flags override
  through :func:`apply_overrides`.

Where profiles are found (first match wins, so a user profile may shadow a shipped one):

1. every directory in ``$EDGESEG_PROFILES_DIR`` (``os.pathsep``-separated), then
2. the shipped ``profiles/`` directory: ``<repo>/profiles`` next to the ``edgeseg`` package
   when running from a source checkout or an editable install, else ``edgeseg/profiles``
   inside the installed package.

``load_profile`` takes a profile name, a path to a ``.yaml`` file, or ``"auto"``, which runs
:func:`detect_profile`. Every problem with a profile file is an :class:`EdgesegError` whose
message is one line naming the file, the key path and what was expected, e.g.
``profiles/x.yaml: deploy.precision: expected one of fp32, fp16, int8, got 'fp64'``.

Modules: :mod:`.schema` (the typed profile and its validation), :mod:`.store` (files, lookup,
overrides) and :mod:`.detection` (which profile fits this machine). They import only the
standard library and PyYAML, so ``edgeseg profiles list`` and ``--help`` stay fast.
"""

from edgeseg.profiles.detection import (
    ENV_BOARD,
    ENV_PROFILE,
    Detection,
    detect,
    detect_profile,
    detect_with_source,
)
from edgeseg.profiles.schema import (
    BACKENDS,
    DEVICE_KINDS,
    ENV_PROFILES_DIR,
    GPU_ARCHS,
    PRECISIONS,
    SECTIONS,
    BenchSettings,
    CalibrationSettings,
    DeploySettings,
    DeviceSpec,
    PowerSettings,
    Profile,
    ProfileWarning,
)
from edgeseg.profiles.store import (
    OVERRIDABLE,
    apply_overrides,
    list_profiles,
    load_profile,
    profile_path,
    profiles_dirs,
    validate_profile,
)

__all__ = [
    "BACKENDS",
    "DEVICE_KINDS",
    "ENV_PROFILES_DIR",
    "GPU_ARCHS",
    "OVERRIDABLE",
    "PRECISIONS",
    "SECTIONS",
    "BenchSettings",
    "CalibrationSettings",
    "DeploySettings",
    "Detection",
    "DeviceSpec",
    "PowerSettings",
    "Profile",
    "ProfileWarning",
    "apply_overrides",
    "ENV_BOARD",
    "ENV_PROFILE",
    "detect",
    "detect_profile",
    "detect_with_source",
    "list_profiles",
    "load_profile",
    "profile_path",
    "profiles_dirs",
    "validate_profile",
]
