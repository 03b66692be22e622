"""The function role's inline policy, parsed from what the program declared: exact action/resource pairs."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pytest

from components.policies import least_privilege_policy
from local.program import ProgramRun, run_program
from tests.pulumi_mocks import ACCOUNT_ID, REGION, EchoMocks, fake_layer_zip, run_stack, stack_run

KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"


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


def kms_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in document["Statement"] if any(a.startswith("kms:") for a in s["Action"])]


def test_the_kms_key_is_usable_only_through_s3_for_the_stacks_own_buckets() -> None:
    """Not a grant on the key as such: S3 in the stack's region must be the caller, for one of the
    three buckets. Every bucket has a bucket key, which is why S3's encryption context is the bucket
    ARN; were bucket keys turned off, it would be the object ARN and this condition would deny."""
    run = run_stack("dev", kmsKeyArn=KMS_KEY_ARN)
    [statement] = kms_statements(declared_policy(run))
    condition = statement["Condition"]
    assert list(condition) == ["StringEquals"], "one operator: every key must match, no ...IfExists"
    assert set(condition["StringEquals"]) == {"kms:ViaService", "kms:EncryptionContext:aws:s3:arn"}
    assert condition["StringEquals"]["kms:ViaService"] == f"s3.{REGION}.amazonaws.com"
    bucket_arns = sorted(r.state["arn"] for r in run.of_type("aws:s3/bucket:Bucket"))
    assert sorted(condition["StringEquals"]["kms:EncryptionContext:aws:s3:arn"]) == bucket_arns
    assert len(bucket_arns) == 3
    for encryption in run.of_type(ENCRYPTION):
        [rule] = encryption.inputs["rules"]
        assert rule["bucketKeyEnabled"] is True, f"{encryption.urn}: the KMS condition assumes a bucket key"


def test_the_kms_grant_names_s3_in_the_providers_region() -> None:
    key = f"arn:aws:kms:eu-west-1:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    run = run_stack("prod", kmsKeyArn=key, **{"aws:region": "eu-west-1"})
    [statement] = kms_statements(declared_policy(run))
    assert run.one("pulumi:providers:aws").inputs["region"] == "eu-west-1"
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == "s3.eu-west-1.amazonaws.com"
    assert statement["Resource"] == key


class ChinaMocks(EchoMocks):
    """The partition AWS answers for a provider in a China region."""

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        if args.token == "aws:index/getPartition:getPartition":
            return {
                "id": "aws-cn",
                "partition": "aws-cn",
                "dnsSuffix": "amazonaws.com.cn",
                "reverseDnsPrefix": "cn.com.amazonaws",
            }
        return super().call(args)


def test_the_kms_grant_names_s3_by_the_partitions_domain() -> None:
    """S3's endpoint in China is s3.cn-north-1.amazonaws.com.cn: a grant naming amazonaws.com would never match."""
    key = f"arn:aws-cn:kms:cn-north-1:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    overrides = {"layerZip": str(fake_layer_zip()), "kmsKeyArn": key, "aws:region": "cn-north-1"}
    run = run_program("prod", ChinaMocks(), config_overrides=overrides)
    [statement] = kms_statements(declared_policy(run))
    assert statement["Condition"]["StringEquals"]["kms:ViaService"] == "s3.cn-north-1.amazonaws.com.cn"


def test_the_dead_letter_queue_needs_no_kms_grant() -> None:
    """The queue keeps SQS-managed SSE with a KMS key too, so sqs:SendMessage alone delivers to it."""
    run = run_stack("dev", kmsKeyArn=KMS_KEY_ARN)
    for statement in kms_statements(declared_policy(run)):
        assert statement["Condition"]["StringEquals"]["kms:ViaService"].startswith("s3."), statement
    assert run.one("aws:sqs/queue:Queue").inputs["sqsManagedSseEnabled"] is True


def pure_policy(kms_key_arn: str | None, region: str = "us-east-1") -> dict[str, Any]:
    return least_privilege_policy(
        upload_bucket_arn="arn:aws:s3:::up",
        processed_bucket_arn="arn:aws:s3:::out",
        quarantine_bucket_arn="arn:aws:s3:::bad",
        log_group_arn=f"arn:aws:logs:{region}:123456789012:log-group:/aws/lambda/f",
        dead_letter_queue_arn=f"arn:aws:sqs:{region}:123456789012:dlq",
        kms_key_arn=kms_key_arn,
        region=region,
        dns_suffix="amazonaws.com",
    )


def test_the_kms_statement_as_a_pure_function_of_arns_and_region() -> None:
    key = "arn:aws:kms:ap-southeast-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    [statement] = kms_statements(pure_policy(key, "ap-southeast-2"))
    assert statement == {
        "Sid": "UseBucketKey",
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": key,
        "Condition": {
            "StringEquals": {
                "kms:ViaService": "s3.ap-southeast-2.amazonaws.com",
                "kms:EncryptionContext:aws:s3:arn": ["arn:aws:s3:::up", "arn:aws:s3:::out", "arn:aws:s3:::bad"],
            }
        },
    }


def test_without_a_kms_key_there_is_no_kms_statement() -> None:
    document = pure_policy(None)
    assert not any(action.startswith("kms:") for action, _ in action_resource_pairs(document))
    assert ("s3:PutObject", "arn:aws:s3:::up/*") not in action_resource_pairs(document), "uploads are read-only"
