"""The `aws:*` stack config keys the AWS provider takes: one list for the program and the emulator.

Only Pulumi's default provider reads `aws:*` stack config. The program declares its own provider
(for the default tags), so it must pass these on itself, or `aws:profile`, `aws:assumeRoles` and
`aws:allowedAccountIds` would be ignored without a word and the deploy would use whatever
credentials the shell has.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import pulumi_aws as aws

Kind = Literal["bool", "int", "str", "object"]
_SCALARS: Mapping[type, Kind] = MappingProxyType({bool: "bool", int: "int", str: "str"})


@dataclass(frozen=True)
class ProviderKey:
    """One provider setting: its `aws:` config key, its `aws.Provider` argument and its kind of value."""

    key: str
    argument: str
    kind: Kind
    """Scalars by type; lists and nested objects (YAML structures in the stack file) are `object`."""


def _camel(argument: str) -> str:
    head, *rest = argument.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@functools.cache
def provider_keys() -> tuple[ProviderKey, ...]:
    """Read from the installed pulumi-aws, so a provider upgrade brings its new settings along."""
    keys = []
    for argument, parameter in inspect.signature(aws.ProviderArgs.__init__).parameters.items():
        if argument.startswith("__"):
            continue
        kind = _SCALARS.get(typing.get_args(parameter.annotation)[0], "object")
        keys.append(ProviderKey(_camel(argument), argument, kind))
    return tuple(keys)
