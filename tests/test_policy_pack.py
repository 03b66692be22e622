"""How the pack is wired: the CLI entry point, its config files, and preview-time behaviour.

`pulumi preview --policy-pack policy` can't run here (no CLI), so these tests check what it would
load: `policy/__main__.py` builds a `PolicyPack` from the same rule objects the harness runs, the
shipped `--policy-pack-config` files name real policies and declared settings, and rules stay
silent on values that are unknown during preview instead of misfiring.
"""

from __future__ import annotations

import copy
import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pulumi_policy
import pytest
import yaml
from pulumi_policy import EnforcementLevel
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from local.program import ProgramRun, Registration
from policy.harness import POLICY_DIR, evaluate, load_pack_config, resolve_config
from policy.rules import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES
from tests.pulumi_mocks import run_stack

PROJECT_DIR = Path(__file__).resolve().parent.parent
SECURITY_RULES = {
    "s3-bucket-public-access-block",
    "s3-bucket-encryption",
    "s3-bucket-ownership-enforced",
    "s3-bucket-tls-only",
    "s3-no-public-grants",
    "iam-no-wildcards",
    "lambda-permission-source",
    "s3-notification-no-recursion",
}
"""Rules that stay mandatory even in dev: a public bucket or a recursion loop costs the same in any stack."""


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return run_stack("dev")


def test_cli_entry_point_serves_the_rules_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run `policy/__main__.py` as the CLI does (cwd `policy/`), with PolicyPack recorded instead of served."""
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: served.append(kwargs))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "rules", raising=False)
    monkeypatch.chdir(POLICY_DIR)
    try:
        runpy.run_path(".", run_name="__main__")
    finally:
        sys.modules.pop("rules", None)

    assert len(served) == 1
    pack = served[0]
    assert pack["name"] == PACK_NAME
    assert pack["enforcement_level"] == DEFAULT_ENFORCEMENT == EnforcementLevel.MANDATORY
    assert [policy.name for policy in pack["policies"]] == [policy.name for policy in POLICIES]


def test_pulumi_policy_yaml_declares_a_python_pack() -> None:
    project = yaml.safe_load((POLICY_DIR / "PulumiPolicy.yaml").read_text())
    assert project["runtime"]["name"] == "python"
    assert project["version"]
    assert (POLICY_DIR / project["runtime"]["options"]["virtualenv"]).name == "venv"


def test_pack_requirements_pin_what_the_project_tests_with() -> None:
    def pins(path: Path) -> dict[str, str]:
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
        return dict(line.split("==", 1) for line in lines if "==" in line)

    pack_pins = pins(POLICY_DIR / "requirements.txt")
    project_pins = pins(PROJECT_DIR / "requirements.txt")
    assert set(pack_pins) == {"pulumi", "pulumi-policy"}
    assert {name: project_pins.get(name) for name in pack_pins} == pack_pins


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_config_files_name_real_policies_and_declared_settings(stack: str) -> None:
    config = load_pack_config(f"{stack}.json")
    resolved = resolve_config(config)  # raises on a policy name the pack doesn't have
    schemas = {policy.name: policy.config_schema for policy in POLICIES}
    for name, entry in config.items():
        if name == "all" or not isinstance(entry, dict):
            continue
        settings = set(entry) - {"enforcementLevel"}
        declared = set(schemas[name].properties) if schemas[name] else set()
        assert settings <= declared, f"{stack}.json sets {settings - declared} that {name} does not declare"
    assert {name for name, (level, _) in resolved.items() if level == EnforcementLevel.MANDATORY} >= SECURITY_RULES


def test_prod_makes_every_rule_mandatory() -> None:
    resolved = resolve_config(load_pack_config("prod.json"))
    assert {level for level, _ in resolved.values()} == {EnforcementLevel.MANDATORY}


def test_dev_relaxes_only_operational_rules() -> None:
    resolved = resolve_config(load_pack_config("dev.json"))
    advisory = {name for name, (level, _) in resolved.items() if level == EnforcementLevel.ADVISORY}
    assert advisory == {
        "s3-bucket-versioning",
        "lambda-log-retention",
        "lambda-failure-destination",
        "lambda-failure-alarm",
        "lambda-timeout",
        "required-tags",
    }
    assert advisory.isdisjoint(SECURITY_RULES)


def test_enforcement_level_follows_the_stack_config(dev: ProgramRun) -> None:
    resources = copy.deepcopy(dev.resources)
    versioning = next(r for r in resources if r.name.endswith("upload-versioning"))
    for props in (versioning.inputs, versioning.state):
        props["versioningConfiguration"] = {"status": "Suspended"}

    in_dev = evaluate(resources, load_pack_config("dev.json"))
    assert [(v.policy, v.enforcement_level) for v in in_dev.violations] == [
        ("s3-bucket-versioning", EnforcementLevel.ADVISORY)
    ]
    assert in_dev.mandatory == []

    in_prod = evaluate(resources, load_pack_config("prod.json"))
    assert [(v.policy, v.enforcement_level) for v in in_prod.mandatory] == [
        ("s3-bucket-versioning", EnforcementLevel.MANDATORY)
    ]


def test_policy_entry_overrides_all_as_the_cli_does() -> None:
    resolved = resolve_config({"all": "disabled", "lambda-timeout": {"enforcementLevel": "mandatory"}})
    enabled = {name for name, (level, _) in resolved.items() if level != EnforcementLevel.DISABLED}
    assert enabled == {"lambda-timeout"}


def test_config_naming_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="s3-bucket-encrypted"):
        resolve_config({"s3-bucket-encrypted": "advisory"})


def test_disabled_rule_does_not_run(dev: ProgramRun) -> None:
    resources = copy.deepcopy(dev.resources)
    function = next(r for r in resources if r.type == "aws:lambda/function:Function")
    function.inputs["timeout"] = function.state["timeout"] = 901
    assert [v.policy for v in evaluate(resources).violations] == ["lambda-timeout"]
    assert evaluate(resources, {"lambda-timeout": "disabled"}).violations == []


# --- preview: unknown ids and values -------------------------------------------------------------


def _registration(type_token: str, name: str, inputs: dict[str, Any], **extra: Any) -> Registration:
    registration = Registration(
        urn=f"urn:pulumi:dev::image-pipeline::{type_token}::{name}",
        type=type_token,
        name=name,
        custom=True,
        parent="",
        provider="",
        dependencies=[],
        protect=False,
        retain_on_delete=False,
        inputs=inputs,
        id="",
        state={},
    )
    for key, value in extra.items():
        setattr(registration, key, value)
    return registration


def _preview_bucket_stack(*, status: str, link_by_dependency: bool) -> list[Registration]:
    """A bucket whose id is unknown (preview), so its versioning's `bucket` input is unknown too."""
    bucket = _registration("aws:s3/bucket:Bucket", "uploads", {"bucket": "uploads-1234"})
    dependencies = {"bucket": [bucket.urn]} if link_by_dependency else {}
    versioning = _registration(
        "aws:s3/bucketVersioning:BucketVersioning",
        "uploads-versioning",
        {"bucket": UNKNOWN_STRING_VALUE, "versioningConfiguration": {"status": status}},
        property_dependencies=dependencies,
    )
    return [bucket, versioning]


def test_preview_links_separate_resources_through_property_dependencies() -> None:
    resources = _preview_bucket_stack(status="Suspended", link_by_dependency=True)
    violations = evaluate(resources, {"all": "disabled", "s3-bucket-versioning": "mandatory"}).violations
    assert [(v.urn, v.message) for v in violations] == [
        (resources[0].urn, "Bucket 'uploads': versioning is 'Suspended', not 'Enabled'")
    ]


def test_preview_never_reports_what_it_cannot_link() -> None:
    """No property dependency and an unknown `bucket`: undecided until `pulumi up`, not 'missing'."""
    resources = _preview_bucket_stack(status="Suspended", link_by_dependency=False)
    result = evaluate(resources, {"all": "disabled", "s3-bucket-versioning": "mandatory"})
    assert result.violations == []


def test_unknown_inputs_are_not_violations() -> None:
    permission = _registration(
        "aws:lambda/permission:Permission",
        "allow-s3",
        {"principal": "s3.amazonaws.com", "sourceArn": UNKNOWN_STRING_VALUE, "sourceAccount": UNKNOWN_STRING_VALUE},
    )
    to_someone = _registration("aws:lambda/permission:Permission", "allow-caller", {"principal": UNKNOWN_STRING_VALUE})
    url = _registration("aws:lambda/functionUrl:FunctionUrl", "url", {"authorizationType": UNKNOWN_STRING_VALUE})
    policy_document = json.dumps({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "x"}]})
    role_policy = _registration("aws:iam/rolePolicy:RolePolicy", "policy", {"policy": UNKNOWN_STRING_VALUE})
    known_policy = _registration("aws:iam/rolePolicy:RolePolicy", "known", {"policy": policy_document})
    result = evaluate([permission, to_someone, url, role_policy, known_policy])
    assert result.violations == []
    assert result.unresolved == []


def test_tls_deny_is_not_judged_against_a_bucket_arn_unknown_in_preview() -> None:
    """A new bucket's ARN is unknown in preview: any object pattern passes until `pulumi up` knows the ARN."""
    bucket = _registration("aws:s3/bucket:Bucket", "uploads", {"bucket": "uploads-1234", "arn": UNKNOWN_STRING_VALUE})
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": "arn:aws:s3:::uploads-1234/*",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    policy = _registration(
        "aws:s3/bucketPolicy:BucketPolicy",
        "uploads-tls-only",
        {"bucket": UNKNOWN_STRING_VALUE, "policy": json.dumps({"Statement": [deny]})},
        property_dependencies={"bucket": [bucket.urn]},
    )
    result = evaluate([bucket, policy], {"all": "disabled", "s3-bucket-tls-only": "mandatory"})
    assert result.violations == []
    assert result.unresolved == []
