"""The function role's inline policy, parsed from what the program declared: exact action/resource pairs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.policies import least_privilege_policy
from local.program import ProgramRun
from tests.pulumi_mocks import ACCOUNT_ID, REGION, run_stack, stack_run

KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def action_resource_pairs(document: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (action, resource) an Allow grants; refuses shapes that would widen it."""
    assert document["Version"] == "2012-10-17"
    pairs: set[tuple[str, str]] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow", statement
        assert not {"NotAction", "NotResource", "Principal"} & set(statement), statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        pairs |= {(action, resource) for action in actions for resource in resources}
    return pairs


def declared_policy(run: ProgramRun) -> dict[str, Any]:
    return json.loads(run.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])


def expected_pairs(run: ProgramRun) -> set[tuple[str, str]]:
    buckets = {r.name.removeprefix("pipeline-"): r.state["arn"] for r in run.of_type("aws:s3/bucket:Bucket")}
    log_group_arn = run.one("aws:cloudwatch/logGroup:LogGroup").state["arn"]
    queue_arn = run.one("aws:sqs/queue:Queue").state["arn"]
    return {
        ("s3:GetObject", f"{buckets['upload']}/*"),
        ("s3:GetObjectVersion", f"{buckets['upload']}/*"),
        ("s3:PutObject", f"{buckets['processed']}/*"),
        ("s3:PutObject", f"{buckets['quarantine']}/*"),
        ("logs:CreateLogStream", f"{log_group_arn}:*"),
        ("logs:PutLogEvents", f"{log_group_arn}:*"),
        ("sqs:SendMessage", queue_arn),
    }


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_role_policy_grants_exactly_what_the_function_does(stack: str) -> None:
    run = stack_run(stack)
    pairs = action_resource_pairs(declared_policy(run))
    assert pairs == expected_pairs(run)
    log_group_name = run.one("aws:cloudwatch/logGroup:LogGroup").inputs["name"]
    assert ("logs:PutLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{log_group_name}:*") in pairs


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_role_policy_has_no_wildcard_action_or_resource(stack: str) -> None:
    for action, resource in action_resource_pairs(declared_policy(stack_run(stack))):
        assert "*" not in action, action
        assert resource != "*" and not resource.endswith(":::*"), resource
        # The only `*` allowed is the trailing object/stream scope of one named bucket or log group.
        assert "*" not in resource.removesuffix("/*").removesuffix(":*"), resource


def test_a_kms_key_adds_exactly_decrypt_and_generate_data_key_on_that_key() -> None:
    run = run_stack("dev", kmsKeyArn=KMS_KEY_ARN)
    pairs = action_resource_pairs(declared_policy(run))
    assert pairs - expected_pairs(run) == {("kms:Decrypt", KMS_KEY_ARN), ("kms:GenerateDataKey", KMS_KEY_ARN)}
    assert expected_pairs(run) <= pairs


def test_without_a_kms_key_there_is_no_kms_statement() -> None:
    document = least_privilege_policy(
        upload_bucket_arn="arn:aws:s3:::up",
        processed_bucket_arn="arn:aws:s3:::out",
        quarantine_bucket_arn="arn:aws:s3:::bad",
        log_group_arn="arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/f",
        dead_letter_queue_arn="arn:aws:sqs:us-east-1:123456789012:dlq",
        kms_key_arn=None,
    )
    assert not any(action.startswith("kms:") for action, _ in action_resource_pairs(document))
    assert ("s3:PutObject", "arn:aws:s3:::up/*") not in action_resource_pairs(document), "uploads are read-only"
