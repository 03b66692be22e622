"""Run the project's real `__main__.py` in-process under a `pulumi.runtime.Mocks`.

This is how the program is exercised without the Pulumi CLI: the unit tests pass a mock
that echoes inputs, the policy tests feed the recorded resources to the policy rules, and
the local emulator passes a mock that creates each resource in moto. Config comes from the
real `Pulumi.yaml` defaults overlaid with `Pulumi.<stack>.yaml`, as `pulumi up` would see it.
"""

from __future__ import annotations

import difflib
import json
import runpy
import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

PROJECT_DIR = Path(__file__).resolve().parent.parent


@dataclass
class Registration:
    """One resource as the program declared it, with what the mock returned for it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    dependencies: list[str]
    protect: bool
    retain_on_delete: bool
    inputs: dict[str, Any]
    id: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    """Input property name -> URNs it was computed from, as the engine hands them to policy packs."""


@dataclass
class ProgramRun:
    """Everything one run of the program declared and exported."""

    project: str
    stack: str
    config: dict[str, str]
    resources: list[Registration]
    outputs: dict[str, Any]

    def of_type(self, type_token: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str) -> Registration:
        found = self.of_type(type_token)
        if len(found) != 1:
            raise AssertionError(f"expected one {type_token}, found {[r.urn for r in found]}")
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        for registration in self.resources:
            if registration.urn == urn:
                return registration
        raise KeyError(urn)


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also keeps what MockResourceArgs leaves out: parent, deps, options."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        registered = self.resources[response.urn]
        self.registrations.append(
            Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=bool(request.custom),
                parent=request.parent,
                provider=request.provider,
                dependencies=list(request.dependencies),
                protect=bool(request.protect),
                retain_on_delete=bool(request.retainOnDelete),
                inputs=pulumi.runtime.rpc.deserialize_properties(request.object),
                id=registered.id or "",
                state=dict(registered.state or {}),
                property_dependencies={key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
            )
        )
        return response


def _config_value(value: Any) -> str:
    """Pulumi passes structured config to programs as JSON text, scalars as plain text."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _qualify(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


class UnknownConfigKeyError(ValueError):
    """An override names a key Pulumi.yaml does not declare, e.g. a typo that would deploy the default."""


def _project_file(project_dir: Path) -> dict[str, Any]:
    return yaml.safe_load((project_dir / "Pulumi.yaml").read_text())


def stack_names(project_dir: Path = PROJECT_DIR) -> list[str]:
    """The stacks with a `Pulumi.<stack>.yaml` in the project."""
    return sorted(path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in project_dir.glob("Pulumi.*.yaml"))


def check_config_key(key: str, also: Collection[str] = (), project_dir: Path = PROJECT_DIR) -> str:
    """The qualified form of an override's key, if Pulumi.yaml declares it or it is one of `also`.

    Raises UnknownConfigKeyError naming the key, the closest allowed one and all of them.
    """
    project_file = _project_file(project_dir)
    project = project_file["name"]
    qualified = _qualify(key, project)
    declared = [_qualify(name, project) for name in project_file.get("config") or {}]
    allowed = [*declared, *(name for name in also if name not in declared)]
    if qualified in allowed:
        return qualified
    shown = [name.removeprefix(f"{project}:") for name in allowed]
    wanted = qualified.removeprefix(f"{project}:")
    same_but_case = [name for name in shown if name.lower() == wanted.lower()]
    closest = same_but_case or difflib.get_close_matches(wanted, shown, n=1)
    hint = f"did you mean {closest[0]!r}? " if closest else ""
    raise UnknownConfigKeyError(f"unknown config key {key!r}; {hint}allowed keys: {', '.join(shown)}")


def load_stack_config(
    stack: str, project_dir: Path = PROJECT_DIR, overrides: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, str]]:
    """Return (project name, config map) for a stack: Pulumi.yaml defaults, the stack file, then `overrides`.

    `overrides` maps config keys (bare keys get the project namespace) to values; a value of None
    removes the key. Any key is taken (tests set provider keys too); `check_config_key` vets a user's.
    """
    project_file = _project_file(project_dir)
    project = project_file["name"]
    config: dict[str, str] = {}
    for key, declaration in (project_file.get("config") or {}).items():
        if isinstance(declaration, Mapping) and ("default" in declaration or "value" in declaration):
            default = declaration.get("value", declaration.get("default"))
            config[_qualify(key, project)] = _config_value(default)
        elif not isinstance(declaration, Mapping):
            config[_qualify(key, project)] = _config_value(declaration)
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        raise FileNotFoundError(f"no stack file {stack_file.name} in {project_dir}")
    for key, value in ((yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}).items():
        config[_qualify(key, project)] = _config_value(value)
    for key, value in (overrides or {}).items():
        qualified = _qualify(key, project)
        if value is None:
            config.pop(qualified, None)
        else:
            config[qualified] = _config_value(value)
    return project, config


def run_program(
    stack: str,
    mocks: pulumi.runtime.Mocks,
    *,
    project_dir: Path = PROJECT_DIR,
    config_overrides: Mapping[str, Any] | None = None,
    preview: bool = False,
) -> ProgramRun:
    """Run `<project_dir>/__main__.py` for `stack` under `mocks` and return what it declared.

    `config_overrides` are applied as `load_stack_config` applies them. Exceptions raised by the
    program propagate unchanged.
    """
    project, config = load_stack_config(stack, project_dir, config_overrides)

    pulumi_settings.reset_options(project=project, stack=stack, preview=preview)
    pulumi.runtime.set_all_config(config, secret_keys=[])
    monitor = _RecordingMonitor(mocks)
    pulumi_mocks.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    root = pulumi_settings.get_root_resource()

    program = str(project_dir / "__main__.py")
    added_path = str(project_dir) not in sys.path
    if added_path:
        sys.path.insert(0, str(project_dir))
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(program, run_name="__main__")))
        outputs = {
            name: _sync_await(pulumi.Output.from_input(value).future())
            for name, value in (root.outputs if root is not None else {}).items()
        }
    finally:
        if added_path:
            sys.path.remove(str(project_dir))
    return ProgramRun(project, stack, config, list(monitor.registrations), outputs)
