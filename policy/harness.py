"""Run the pack's rules on a program run's resources, the way the Pulumi engine's analyzer would.

The CLI is what normally calls the pack (`pulumi preview --policy-pack policy`). Here, the
resources a program declared under mocks (`local.program.ProgramRun.resources`) become
pulumi-policy's own `ResourceValidationArgs` and `StackValidationArgs`, and the very `POLICIES`
objects `__main__.py` registers are called with a `report_violation` that collects what they say.
It mirrors `pulumi_policy.policy._PolicyAnalyzerServicer`: resource rules see inputs, stack rules
see outputs (here the mock's state over the inputs, plus `id`, as bridged providers report it),
props are wrapped in the unknown-checking proxy, and enforcement levels come from a
`--policy-pack-config` file (`all` first, then the policy's own entry).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from inspect import isawaitable
from pathlib import Path
from typing import Any, Protocol

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.policy import _NotApplicableError
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from .rules import DEFAULT_ENFORCEMENT, POLICIES

log = logging.getLogger(__name__)

POLICY_DIR = Path(__file__).resolve().parent


class DeclaredResource(Protocol):
    """What the harness needs of a resource; `local.program.Registration` has it.

    A resource may also carry `property_dependencies` (prop -> URNs), as the engine sends them;
    rules use them to link a `BucketVersioning` to its bucket while ids are unknown in preview.
    """

    urn: str
    type: str
    name: str
    parent: str
    provider: str
    dependencies: list[str]
    protect: bool
    inputs: dict[str, Any]
    id: str
    state: dict[str, Any]


@dataclass(frozen=True)
class Violation:
    """One `report_violation` call, with the enforcement level the pack config gave its policy."""

    policy: str
    enforcement_level: EnforcementLevel
    urn: str
    message: str


@dataclass
class PackResult:
    """Everything the pack reported for one stack."""

    violations: list[Violation] = field(default_factory=list)
    unresolved: list[tuple[str, str]] = field(default_factory=list)
    """(policy, reason) for rules that hit a value unknown during preview: the CLI reports these as advisory."""
    not_applicable: list[tuple[str, str]] = field(default_factory=list)

    def of(self, policy: str) -> list[Violation]:
        return [v for v in self.violations if v.policy == policy]

    @property
    def mandatory(self) -> list[Violation]:
        """The violations that would fail `pulumi preview`/`up`."""
        return [v for v in self.violations if v.enforcement_level == EnforcementLevel.MANDATORY]

    def summary(self) -> str:
        return "\n".join(f"[{v.enforcement_level.value}] {v.policy}: {v.message} ({v.urn})" for v in self.violations)


def load_pack_config(path: str | Path) -> dict[str, Any]:
    """Read a `--policy-pack-config` JSON file (relative paths are under `policy/`)."""
    config_path = Path(path)
    if not config_path.is_absolute():
        config_path = POLICY_DIR / config_path
    return json.loads(config_path.read_text())


def _level(entry: Any) -> EnforcementLevel | None:
    raw = entry.get("enforcementLevel") if isinstance(entry, Mapping) else entry
    return EnforcementLevel(raw) if raw is not None else None


def resolve_config(
    config: Mapping[str, Any] | None, policies: Sequence[Policy] = POLICIES
) -> dict[str, tuple[EnforcementLevel, dict[str, Any]]]:
    """Per policy: (enforcement level, config properties), as the CLI derives them from a config file.

    Raises ValueError for entries that name no policy of the pack, as `pulumi preview` refuses them.
    """
    config = dict(config or {})
    names = {policy.name for policy in policies}
    unknown = sorted(set(config) - names - {"all"})
    if unknown:
        raise ValueError(f"policy pack config names no policy of the pack: {unknown}")
    pack_level = _level(config.get("all"))
    resolved = {}
    for policy in policies:
        entry = config.get(policy.name)
        level = _level(entry) or pack_level or policy.enforcement_level or DEFAULT_ENFORCEMENT
        properties = {k: v for k, v in entry.items() if k != "enforcementLevel"} if isinstance(entry, Mapping) else {}
        resolved[policy.name] = (level, properties)
    return resolved


def _options(resource: DeclaredResource) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        resource.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], resource.parent or None
    )


def _provider_urn(reference: str) -> str:
    """A provider reference is `<urn>::<id>`; the URN itself contains `::`."""
    return reference.rsplit("::", 1)[0] if reference else ""


class _Stack:
    """The declared resources as pulumi-policy objects, built once and shared by every rule."""

    def __init__(self, resources: Iterable[DeclaredResource]) -> None:
        self.declared = list(resources)
        self.providers = {
            r.urn: PolicyProviderResource(r.type, unknown_checking_proxy(copy.deepcopy(r.inputs)), r.urn, r.name)
            for r in self.declared
            if r.type.startswith("pulumi:providers:")
        }
        self.policy_resources = [
            PolicyResource(
                r.type,
                unknown_checking_proxy(copy.deepcopy({**r.inputs, **r.state, "id": r.id})),
                r.urn,
                r.name,
                _options(r),
                self.provider_of(r),
                None,
                [],
                {},
            )
            for r in self.declared
        ]
        by_urn = {p.urn: p for p in self.policy_resources}
        for declared, resource in zip(self.declared, self.policy_resources, strict=True):
            resource.parent = by_urn.get(declared.parent)
            resource.dependencies = [by_urn[d] for d in declared.dependencies if d in by_urn]
            for prop, urns in (getattr(declared, "property_dependencies", None) or {}).items():
                resource.property_dependencies[prop] = [by_urn[u] for u in urns if u in by_urn]

    def provider_of(self, resource: DeclaredResource) -> PolicyProviderResource | None:
        return self.providers.get(_provider_urn(resource.provider))


def evaluate(
    resources: Iterable[DeclaredResource],
    config: Mapping[str, Any] | None = None,
    *,
    policies: Sequence[Policy] = POLICIES,
    stack_tags: Mapping[str, str] | None = None,
) -> PackResult:
    """Run every enabled policy over the stack; `config` is a `--policy-pack-config` mapping."""
    stack = _Stack(resources)
    settings = resolve_config(config, policies)
    result = PackResult()
    for policy in policies:
        level, properties = settings[policy.name]
        if level == EnforcementLevel.DISABLED:
            continue
        if level == EnforcementLevel.REMEDIATE:
            level = EnforcementLevel.MANDATORY  # what the engine reports when a remediation still violates
        if isinstance(policy, StackValidationPolicy):
            args = StackValidationArgs(stack.policy_resources, properties, stack_tags)
            _call(policy, args, _reporter(result, policy.name, level, fixed_urn=None), result)
        elif isinstance(policy, ResourceValidationPolicy):
            for declared in stack.declared:
                args = ResourceValidationArgs(
                    declared.type,
                    unknown_checking_proxy(copy.deepcopy(declared.inputs)),
                    declared.urn,
                    declared.name,
                    _options(declared),
                    stack.provider_of(declared),
                    properties,
                    stack_tags,
                )
                # As in the engine, a resource rule's violation is about the resource it saw, whatever urn it passes.
                _call(policy, args, _reporter(result, policy.name, level, fixed_urn=declared.urn), result)
    return result


def _reporter(
    result: PackResult, policy: str, level: EnforcementLevel, *, fixed_urn: str | None
) -> Callable[[str, str | None], None]:
    def report_violation(message: str, urn: str | None = None) -> None:
        result.violations.append(Violation(policy, level, fixed_urn or urn or "", message))

    return report_violation


def _call(
    policy: StackValidationPolicy | ResourceValidationPolicy,
    args: Any,
    report_violation: Callable[[str, str | None], None],
    result: PackResult,
) -> None:
    """One validation call, with the engine's handling of preview-unknowns and not-applicable."""
    try:
        validation = policy.validate(args, report_violation)
        if isawaitable(validation):
            asyncio.run(validation)
    except UnknownValueError as error:
        log.info("policy %s can't run during preview: %s", policy.name, error.message)
        result.unresolved.append((policy.name, error.message))
    except _NotApplicableError as error:
        result.not_applicable.append((policy.name, error.reason or ""))
