"""Lambda runtimes and architectures the layer can be built for: the one definition.

The Pulumi program validates stack config against these, and the builder derives pip's
``--platform`` tags from them, so a layer can never be built for a glibc newer than the
runtime's operating system provides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

# Lambda's architecture names -> the machine names used in manylinux platform tags.
MANYLINUX_MACHINES: Mapping[str, str] = MappingProxyType({"x86_64": "x86_64", "arm64": "aarch64"})
ARCHITECTURES: tuple[str, ...] = tuple(MANYLINUX_MACHINES)

# PEP 600 tags are manylinux_<glibc major>_<glibc minor>_<machine>; the older PEP 513/571/599
# names are aliases that some wheels still carry alone.
_LEGACY_MANYLINUX_ALIASES: Mapping[int, str] = MappingProxyType(
    {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
)
# The oldest glibc minor a manylinux wheel exists for on each machine (aarch64 starts at manylinux2014).
_OLDEST_GLIBC_MINOR: Mapping[str, int] = MappingProxyType({"x86_64": 5, "aarch64": 17})


class LayerBuildError(Exception):
    """The layer cannot be built, described or deployed; the message says what and why."""


class UnsupportedTargetError(LayerBuildError, ValueError):
    """A runtime or architecture name is not one we build for; the message lists the allowed ones."""


@dataclass(frozen=True)
class RuntimeInfo:
    """What a Lambda Python runtime runs on, as far as binary wheels care."""

    name: str
    """Lambda runtime identifier, e.g. ``python3.12``."""
    python_version: str
    """``major.minor`` passed to ``pip --python-version``."""
    operating_system: str
    """The runtime's OS, for messages and docs."""
    glibc: tuple[int, int]
    """The OS's glibc (major, minor): the newest manylinux tag its wheels may carry."""

    def platform_tags(self, arch: str) -> tuple[str, ...]:
        """Every manylinux tag this runtime can load on ``arch``, newest glibc first."""
        machine = manylinux_machine(arch)
        major, newest_minor = self.glibc
        tags: list[str] = []
        for minor in range(newest_minor, _OLDEST_GLIBC_MINOR[machine] - 1, -1):
            tags.append(f"manylinux_{major}_{minor}_{machine}")
            if minor in _LEGACY_MANYLINUX_ALIASES:
                tags.append(f"{_LEGACY_MANYLINUX_ALIASES[minor]}_{machine}")
        return tuple(tags)


# Only runtimes Lambda offers whose layer we build and test here (imports checked under a
# local interpreter of the same minor version). Both run on Amazon Linux 2023, glibc 2.34.
RUNTIMES: Mapping[str, RuntimeInfo] = MappingProxyType(
    {
        "python3.12": RuntimeInfo("python3.12", "3.12", "Amazon Linux 2023", (2, 34)),
        "python3.13": RuntimeInfo("python3.13", "3.13", "Amazon Linux 2023", (2, 34)),
    }
)


def runtime_info(runtime: str) -> RuntimeInfo:
    """The runtime's description, or an error naming the bad value and the allowed ones."""
    try:
        return RUNTIMES[runtime]
    except KeyError:
        raise UnsupportedTargetError(
            f"unsupported Lambda runtime {runtime!r}: allowed runtimes are {', '.join(RUNTIMES)}"
        ) from None


def manylinux_machine(arch: str) -> str:
    """The manylinux machine name for a Lambda architecture, or an error naming the allowed ones."""
    try:
        return MANYLINUX_MACHINES[arch]
    except KeyError:
        raise UnsupportedTargetError(
            f"unsupported Lambda architecture {arch!r}: allowed architectures are {', '.join(ARCHITECTURES)}"
        ) from None
