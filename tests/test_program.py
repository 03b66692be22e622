"""The real `__main__.py` under echo mocks, for the dev and prod stack files: points 1-8 of issue 2, then the alarms.

Each assertion reads what the program declared (type, inputs, parent, dependencies, options)
the way a reviewer would check a `pulumi preview --diff` by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from components.code import handler_archive, handler_sources
from components.image_pipeline import COMPONENT_TYPE
from handler.variants import PRESETS, variants_from_json, variants_to_json
from local.program import ProgramRun, Registration
from tests.pulumi_mocks import ACCOUNT_ID, REGION, fake_layer_zip, run_stack, stack_run

BUCKET = "aws:s3/bucket:Bucket"
VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
OWNERSHIP = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LIFECYCLE = "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"
NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
LAYER = "aws:lambda/layerVersion:LayerVersion"
FUNCTION = "aws:lambda/function:Function"
INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
PERMISSION = "aws:lambda/permission:Permission"
QUEUE = "aws:sqs/queue:Queue"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
RANDOM_ID = "random:index/randomId:RandomId"
AWS_PROVIDER = "pulumi:providers:aws"

HANDLER_DIR = Path(__file__).resolve().parent.parent / "handler"
BUCKET_ROLES = ("upload", "processed", "quarantine")
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALARM_TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:image-pipeline-alerts"
# What each stack file sets, where dev and prod differ as a user expects.
EXPECTED = {
    "dev": {
        "protect": False,
        "noncurrent_days": 7,
        "quarantine_days": 7,
        "log_retention": 7,
        "memory": 2304,
        "timeout": 60,
        "reserved": -1,
        "log_level": "DEBUG",
        "dlq_days": 4,
        "event_age": 3600,
    },
    "prod": {
        "protect": True,
        "noncurrent_days": 90,
        "quarantine_days": 90,
        "log_retention": 90,
        "memory": 2304,
        "timeout": 120,
        "reserved": 20,
        "log_level": "INFO",
        "dlq_days": 14,
        "event_age": 21600,
    },
}


@pytest.fixture(scope="module", params=["dev", "prod"])
def run(request: pytest.FixtureRequest) -> ProgramRun:
    return stack_run(request.param)


@pytest.fixture(scope="module")
def kms_run() -> ProgramRun:
    return run_stack("dev", kmsKeyArn=KMS_KEY_ARN)


@pytest.fixture(scope="module")
def filtered_run() -> ProgramRun:
    return run_stack("dev", uploadPrefix="incoming/", uploadSuffix=".jpg")


@pytest.fixture(scope="module")
def alarmed_run() -> ProgramRun:
    return run_stack("prod", alarmTopicArn=ALARM_TOPIC_ARN)


def expected(run: ProgramRun, key: str) -> Any:
    return EXPECTED[run.stack][key]


def component(run: ProgramRun) -> Registration:
    return run.one(COMPONENT_TYPE)


def bucket(run: ProgramRun, role: str) -> Registration:
    return next(r for r in run.of_type(BUCKET) if r.name == f"pipeline-{role}")


def child_of(run: ProgramRun, parent: Registration, type_token: str) -> Registration:
    found = [r for r in run.of_type(type_token) if r.parent == parent.urn]
    assert len(found) == 1, f"expected one {type_token} under {parent.urn}, found {[r.urn for r in found]}"
    return found[0]


def bucket_children(run: ProgramRun) -> Iterator[tuple[str, Registration]]:
    for role in BUCKET_ROLES:
        yield role, bucket(run, role)


# 1. Random suffix and bucket names -----------------------------------------------------------------------------


def test_bucket_names_are_project_stack_role_hex(run: ProgramRun) -> None:
    suffix = run.one(RANDOM_ID)
    assert suffix.parent == component(run).urn
    assert suffix.inputs["byteLength"] == 4
    hex_value = suffix.state["hex"]
    for role, registration in bucket_children(run):
        name = registration.inputs["bucket"]
        assert name == f"image-pipeline-{run.stack}-{role}-{hex_value}", registration.urn
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name), f"{name!r} is not a valid S3 bucket name"
        assert suffix.urn in registration.dependencies
    assert len(run.of_type(BUCKET)) == 3


# 2. Bucket protections ---------------------------------------------------------------------------------------------


def test_every_bucket_is_versioned(run: ProgramRun) -> None:
    for _, registration in bucket_children(run):
        versioning = child_of(run, registration, VERSIONING)
        assert versioning.inputs["bucket"] == registration.inputs["bucket"]
        assert versioning.inputs["versioningConfiguration"] == {"status": "Enabled"}, versioning.urn


def test_every_bucket_defaults_to_sse_s3_without_a_kms_key(run: ProgramRun) -> None:
    for _, registration in bucket_children(run):
        encryption = child_of(run, registration, ENCRYPTION)
        assert encryption.inputs["bucket"] == registration.inputs["bucket"]
        [rule] = encryption.inputs["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "AES256"}, encryption.urn


def test_every_bucket_uses_the_configured_kms_key_with_a_bucket_key(kms_run: ProgramRun) -> None:
    for _, registration in bucket_children(kms_run):
        encryption = child_of(kms_run, registration, ENCRYPTION)
        [rule] = encryption.inputs["rules"]
        assert rule["applyServerSideEncryptionByDefault"] == {
            "sseAlgorithm": "aws:kms",
            "kmsMasterKeyId": KMS_KEY_ARN,
        }, encryption.urn
        assert rule["bucketKeyEnabled"] is True


def test_every_bucket_blocks_all_public_access(run: ProgramRun) -> None:
    for _, registration in bucket_children(run):
        block = child_of(run, registration, PUBLIC_ACCESS_BLOCK)
        assert block.inputs["bucket"] == registration.inputs["bucket"]
        for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
            assert block.inputs[flag] is True, f"{block.urn}: {flag}"


def test_every_bucket_disables_acls(run: ProgramRun) -> None:
    for _, registration in bucket_children(run):
        ownership = child_of(run, registration, OWNERSHIP)
        assert ownership.inputs["rule"] == {"objectOwnership": "BucketOwnerEnforced"}, ownership.urn
    policies = [r.inputs["policy"] for r in run.of_type(ROLE_POLICY) + run.of_type(BUCKET_POLICY)]
    assert not any("Acl" in policy for policy in policies), "ACLs are disabled: no *Acl action may appear"


def test_every_bucket_denies_requests_without_tls(run: ProgramRun) -> None:
    for _, registration in bucket_children(run):
        policy = child_of(run, registration, BUCKET_POLICY)
        arn = registration.state["arn"]
        [statement] = json.loads(policy.inputs["policy"])["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Principal"] == "*"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert sorted(statement["Resource"]) == sorted([arn, f"{arn}/*"]), policy.urn
        block = child_of(run, registration, PUBLIC_ACCESS_BLOCK)
        assert block.urn in policy.dependencies, "policy and public-access block must not race on one bucket"


def test_every_bucket_expires_noncurrent_versions_after_the_configured_days(run: ProgramRun) -> None:
    for role, registration in bucket_children(run):
        lifecycle = child_of(run, registration, LIFECYCLE)
        [rule] = lifecycle.inputs["rules"]
        assert rule["status"] == "Enabled"
        assert rule["filter"] == {}, "the rule must cover the whole bucket"
        assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": expected(run, "noncurrent_days")}
        assert rule["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}, lifecycle.urn
        if role == "quarantine":
            # An expiration by days also removes the delete markers it leaves (S3 does both in one rule).
            assert rule["expiration"] == {"days": expected(run, "quarantine_days")}
        else:
            # Current objects never expire, but the delete marker left once a deleted object's last
            # noncurrent version expires must go too, or every deletion leaves one behind forever.
            assert rule["expiration"] == {"expiredObjectDeleteMarker": True}, f"{lifecycle.urn}: {rule}"
        assert child_of(run, registration, VERSIONING).urn in lifecycle.dependencies


def test_force_destroy_protect_and_retain_follow_the_stack(run: ProgramRun) -> None:
    protect = expected(run, "protect")
    for _, registration in bucket_children(run):
        assert registration.inputs["forceDestroy"] is (not protect), registration.urn
        assert registration.protect is protect
        assert registration.retain_on_delete is protect
        for child in (r for r in run.resources if r.parent == registration.urn):
            assert child.retain_on_delete is protect, f"{child.urn} must stay with its retained bucket"


# 3. Quarantine -------------------------------------------------------------------------------------------------------


def test_quarantine_is_a_separate_bucket_exported_as_a_location(run: ProgramRun) -> None:
    quarantine = bucket(run, "quarantine").inputs["bucket"]
    assert quarantine != bucket(run, "processed").inputs["bucket"]
    assert run.outputs["quarantine_location"] == f"s3://{quarantine}/"
    variables = run.one(FUNCTION).inputs["environment"]["variables"]
    assert variables["QUARANTINE_BUCKET"] == quarantine


# 4. Role (the exact policy document is in test_iam.py) ----------------------------------------------------------


def test_role_is_assumable_only_by_lambda(run: ProgramRun) -> None:
    role = run.one(ROLE)
    trust = json.loads(role.inputs["assumeRolePolicy"])
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Effect"] == "Allow"
    assert "managedPolicyArns" not in role.inputs
    assert run.one(ROLE_POLICY).inputs["role"] == role.id
    assert run.one(FUNCTION).inputs["role"] == role.state["arn"]


# 5. Log group -------------------------------------------------------------------------------------------------------


def test_log_group_is_the_functions_with_the_stacks_retention(run: ProgramRun) -> None:
    log_group = run.one(LOG_GROUP)
    function = run.one(FUNCTION)
    assert log_group.inputs["name"] == f"/aws/lambda/{function.inputs['name']}"
    assert log_group.inputs["retentionInDays"] == expected(run, "log_retention")
    assert log_group.urn in function.dependencies, "the group must exist before Lambda could create it"
    assert run.outputs["log_group_name"] == log_group.inputs["name"]


# 6. Layer, function, async invoke config and dead-letter queue ------------------------------------------------------


def test_layer_matches_the_function_runtime_and_architecture(run: ProgramRun) -> None:
    layer = run.one(LAYER)
    function = run.one(FUNCTION)
    assert layer.inputs["compatibleRuntimes"] == [function.inputs["runtime"]]
    assert layer.inputs["compatibleArchitectures"] == function.inputs["architectures"]
    assert layer.inputs["code"].path == str(fake_layer_zip())
    assert layer.inputs["sourceCodeHash"]
    assert function.inputs["layers"] == [layer.state["arn"]]
    assert run.outputs["layer_arn"] == layer.state["arn"]


def test_function_settings_come_from_the_stack(run: ProgramRun) -> None:
    function = run.one(FUNCTION)
    inputs = function.inputs
    assert inputs["runtime"] == "python3.12"
    assert inputs["architectures"] == ["arm64"]
    assert inputs["handler"] == "handler.app.handler"
    assert inputs["memorySize"] == expected(run, "memory")
    assert inputs["timeout"] == expected(run, "timeout")
    assert inputs["reservedConcurrentExecutions"] == expected(run, "reserved")
    hex_value = run.one(RANDOM_ID).state["hex"]
    assert inputs["name"] == f"image-pipeline-{run.stack}-resize-{hex_value}"
    assert run.one(ROLE_POLICY).urn in function.dependencies, "the first invocation needs its permissions"


def test_function_environment_is_the_handler_contract(run: ProgramRun) -> None:
    variables = run.one(FUNCTION).inputs["environment"]["variables"]
    assert set(variables) == {
        "PROCESSED_BUCKET",
        "QUARANTINE_BUCKET",
        "VARIANTS",
        "LOG_LEVEL",
        "PIXEL_LIMIT",
        "MAX_UPLOAD_BYTES",
    }
    assert variables["PROCESSED_BUCKET"] == bucket(run, "processed").inputs["bucket"]
    assert variables["VARIANTS"] == variants_to_json(PRESETS["default"])
    assert variants_from_json(variables["VARIANTS"]) == PRESETS["default"]
    assert variables["LOG_LEVEL"] == expected(run, "log_level")
    assert variables["PIXEL_LIMIT"] == "89478485"
    assert variables["MAX_UPLOAD_BYTES"] == "52428800"


def test_function_code_is_the_handler_package_sources_only(run: ProgramRun) -> None:
    archive = run.one(FUNCTION).inputs["code"]
    names = sorted(archive.assets)
    assert names, "the function code archive is empty"
    assert "handler/__init__.py" in names
    assert "handler/variants.py" in names
    assert "handler/app.py" in names, "the entry point handler.app.handler must ship"
    assert all(name.startswith("handler/") and name.endswith(".py") for name in names), names
    assert not any("__pycache__" in name for name in names)
    assert names == sorted(handler_sources(HANDLER_DIR))


def test_failures_are_retried_twice_then_dead_lettered(run: ProgramRun) -> None:
    config = run.one(INVOKE_CONFIG)
    function = run.one(FUNCTION)
    queue = run.one(QUEUE)
    assert config.inputs["functionName"] == function.inputs["name"]
    assert config.inputs["maximumRetryAttempts"] == 2
    assert config.inputs["maximumEventAgeInSeconds"] == expected(run, "event_age")
    assert config.inputs["destinationConfig"] == {"onFailure": {"destination": queue.state["arn"]}}


def test_dead_letter_queue_is_encrypted_and_ages_out(run: ProgramRun) -> None:
    queue = run.one(QUEUE)
    assert queue.inputs["sqsManagedSseEnabled"] is True
    assert queue.inputs["messageRetentionSeconds"] == expected(run, "dlq_days") * 86400
    assert run.outputs["dead_letter_queue_url"] == queue.state["url"]


def test_a_kms_key_encrypts_the_buckets_only(kms_run: ProgramRun) -> None:
    """The dead-letter queue must always accept a failed event, and a log group under a customer key
    needs a key policy this program cannot see: both keep AWS-managed encryption."""
    queue = kms_run.one(QUEUE).inputs
    assert queue["sqsManagedSseEnabled"] is True
    assert "kmsMasterKeyId" not in queue
    assert "kmsKeyId" not in kms_run.one(LOG_GROUP).inputs


# 7. Permission and notification ---------------------------------------------------------------------------------------


def test_only_s3_from_this_account_and_bucket_may_invoke(run: ProgramRun) -> None:
    permission = run.one(PERMISSION)
    assert permission.inputs["principal"] == "s3.amazonaws.com"
    assert permission.inputs["action"] == "lambda:InvokeFunction"
    assert permission.inputs["function"] == run.one(FUNCTION).inputs["name"]
    assert permission.inputs["sourceArn"] == bucket(run, "upload").state["arn"]
    assert permission.inputs["sourceAccount"] == ACCOUNT_ID


def test_uploads_trigger_the_function_after_the_permission_exists(run: ProgramRun) -> None:
    notification = run.one(NOTIFICATION)
    assert notification.inputs["bucket"] == bucket(run, "upload").inputs["bucket"]
    [trigger] = notification.inputs["lambdaFunctions"]
    assert trigger == {"lambdaFunctionArn": run.one(FUNCTION).state["arn"], "events": ["s3:ObjectCreated:*"]}
    assert run.one(PERMISSION).urn in notification.dependencies


def test_upload_filters_come_from_config(filtered_run: ProgramRun) -> None:
    [trigger] = filtered_run.one(NOTIFICATION).inputs["lambdaFunctions"]
    assert trigger["filterPrefix"] == "incoming/"
    assert trigger["filterSuffix"] == ".jpg"
    upload = filtered_run.outputs["upload_bucket"]
    assert filtered_run.outputs["upload_command"] == f"aws s3 cp photo.jpg s3://{upload}/incoming/photo.jpg"


# 8. Tags, provider and structure ------------------------------------------------------------------------------------


def test_default_tags_reach_every_aws_resource_through_one_provider(run: ProgramRun) -> None:
    provider = run.one(AWS_PROVIDER)
    default_tags = provider.inputs["defaultTags"]
    if isinstance(default_tags, str):  # providers receive nested config as JSON text
        default_tags = json.loads(default_tags)
    assert default_tags == {"tags": {"project": "image-pipeline", "stack": run.stack, "managed-by": "pulumi"}}
    assert provider.inputs["region"] == REGION
    reference = f"{provider.urn}::{provider.id}"
    aws_resources = [r for r in run.resources if r.type.startswith("aws:")]
    assert len(aws_resources) > 20
    for registration in aws_resources:
        assert registration.provider == reference, f"{registration.urn} does not use the tagged provider"


def test_the_stacks_aws_settings_reach_the_provider() -> None:
    """An explicit provider ignores `aws:*` stack config unless the program passes it on: without
    this, `aws:profile` or `aws:allowedAccountIds` in Pulumi.prod.yaml would silently do nothing."""
    run = run_stack(
        "prod",
        **{
            "aws:profile": "prod-deployer",
            "aws:allowedAccountIds": json.dumps([ACCOUNT_ID]),
            "aws:assumeRoles": json.dumps([{"roleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/deployer"}]),
            "aws:skipMetadataApiCheck": "false",
            "aws:maxRetries": "5",
            "aws:defaultTags": json.dumps({"tags": {"cost-center": "photos", "stack": "not-this-one"}}),
        },
    )
    inputs = {
        key: json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
        for key, value in run.one(AWS_PROVIDER).inputs.items()
    }
    assert inputs["profile"] == "prod-deployer"
    assert inputs["allowedAccountIds"] == [ACCOUNT_ID]
    assert inputs["assumeRoles"] == [{"roleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/deployer"}]
    assert inputs["skipMetadataApiCheck"] in (False, "false")
    assert inputs["maxRetries"] in (5, "5")
    assert inputs["region"] == REGION
    assert inputs["defaultTags"] == {
        "tags": {"cost-center": "photos", "project": "image-pipeline", "stack": "prod", "managed-by": "pulumi"}
    }


def test_every_resource_belongs_to_the_component(run: ProgramRun) -> None:
    root = component(run)
    assert root.name == "pipeline"
    bucket_urns = {r.urn for r in run.of_type(BUCKET)}
    for registration in run.resources:
        if registration.type in (COMPONENT_TYPE, AWS_PROVIDER):
            continue
        assert registration.parent == root.urn or registration.parent in bucket_urns, registration.urn
        assert registration.name.startswith("pipeline-"), registration.urn


def test_stack_exports_what_a_user_needs(run: ProgramRun) -> None:
    upload = bucket(run, "upload").inputs["bucket"]
    function = run.one(FUNCTION)
    assert run.outputs == {
        "upload_bucket": upload,
        "processed_bucket": bucket(run, "processed").inputs["bucket"],
        "quarantine_location": f"s3://{bucket(run, 'quarantine').inputs['bucket']}/",
        "function_name": function.inputs["name"],
        "function_arn": function.state["arn"],
        "layer_arn": run.one(LAYER).state["arn"],
        "dead_letter_queue_url": run.one(QUEUE).state["url"],
        "log_group_name": run.one(LOG_GROUP).inputs["name"],
        "dead_letter_alarm_name": alarm(run, "ApproximateNumberOfMessagesVisible").inputs["name"],
        "function_errors_alarm_name": alarm(run, "Errors").inputs["name"],
        "upload_command": f"aws s3 cp photo.jpg s3://{upload}/photo.jpg",
    }


def test_the_program_is_deterministic(run: ProgramRun) -> None:
    """Same config, same declarations: a second run must not show a diff (names, hashes, archive)."""
    again = run_stack(run.stack)
    assert sorted(map(declared, again.resources)) == sorted(map(declared, run.resources))
    assert again.outputs == run.outputs


def declared(registration: Registration) -> tuple[str, str]:
    """URN and inputs, with archives reduced to what decides their bytes (asset names and files)."""
    inputs = dict(registration.inputs)
    code = inputs.pop("code", None)
    if code is not None:
        inputs["code"] = getattr(code, "path", None) or {name: asset.path for name, asset in code.assets.items()}
    return registration.urn, json.dumps(inputs, sort_keys=True)


@pytest.mark.network
def test_without_layer_zip_the_program_builds_or_reuses_the_real_layer() -> None:
    from layer_build import ensure_layer

    built = run_stack("dev", layerZip=None)
    artifact = ensure_layer("python3.12", "arm64")
    layer = built.one(LAYER)
    assert layer.inputs["sourceCodeHash"] == artifact.source_code_hash
    assert layer.inputs["code"].path == str(artifact.path)


def test_code_archive_skips_bytecode_and_non_python_files(tmp_path: Path) -> None:
    package = tmp_path / "handler"
    (package / "__pycache__").mkdir(parents=True)
    (package / "sub").mkdir()
    for relative in ("__init__.py", "app.py", "sub/__init__.py", "__pycache__/app.cpython-312.pyc", "notes.txt"):
        (package / relative).write_text("# x\n")
    assert list(handler_sources(package)) == ["handler/__init__.py", "handler/app.py", "handler/sub/__init__.py"]


def test_code_archive_refuses_a_directory_that_is_not_the_package(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no __init__\.py"):
        handler_sources(tmp_path)


def test_code_archive_refuses_a_package_without_the_entry_point_module(tmp_path: Path) -> None:
    package = tmp_path / "handler"
    package.mkdir()
    (package / "__init__.py").write_text("")
    with pytest.raises(FileNotFoundError, match=r"'handler\.app\.handler' needs handler/app\.py"):
        handler_archive(package, "handler.app.handler")


# 9. Alarms: failed uploads must not pile up unseen -----------------------------------------------------------------


def alarm(run: ProgramRun, metric_name: str) -> Registration:
    found = [r for r in run.of_type(METRIC_ALARM) if r.inputs["metricName"] == metric_name]
    assert len(found) == 1, f"expected one alarm on {metric_name}, found {[r.urn for r in found]}"
    return found[0]


def assert_fires_on_any(registration: Registration) -> None:
    """One period above zero is enough, and no data (an idle function, an empty queue) is OK."""
    inputs = registration.inputs
    assert inputs["threshold"] == 0, registration.urn
    assert inputs["comparisonOperator"] == "GreaterThanThreshold"
    assert inputs["evaluationPeriods"] == 1
    assert inputs["period"] == 300
    assert inputs["treatMissingData"] == "notBreaching"


class AlarmCase(NamedTuple):
    metric: str
    namespace: str
    dimension: str
    target_type: str
    statistic: str
    physical_role: str
    output: str


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            AlarmCase(
                "ApproximateNumberOfMessagesVisible",
                "AWS/SQS",
                "QueueName",
                QUEUE,
                "Maximum",
                "dead-letter-not-empty",
                "dead_letter_alarm_name",
            ),
            id="the dead-letter queue holds events",
        ),
        pytest.param(
            AlarmCase(
                "Errors", "AWS/Lambda", "FunctionName", FUNCTION, "Sum", "resize-errors", "function_errors_alarm_name"
            ),
            id="the function failed on an upload",
        ),
    ],
)
def test_an_alarm_fires_when(run: ProgramRun, case: AlarmCase) -> None:
    registration = alarm(run, case.metric)
    target = run.one(case.target_type)
    assert registration.parent == component(run).urn
    assert registration.inputs["namespace"] == case.namespace
    assert registration.inputs["dimensions"] == {case.dimension: target.inputs["name"]}
    assert registration.inputs["statistic"] == case.statistic
    assert_fires_on_any(registration)
    hex_value = run.one(RANDOM_ID).state["hex"]
    assert registration.inputs["name"] == f"image-pipeline-{run.stack}-{case.physical_role}-{hex_value}"
    assert target.inputs["name"] in registration.inputs["alarmDescription"]
    assert run.outputs[case.output] == registration.inputs["name"]
    assert len(run.of_type(METRIC_ALARM)) == 2


def test_without_a_topic_the_alarms_notify_nobody(run: ProgramRun) -> None:
    for registration in run.of_type(METRIC_ALARM):
        for key in ("alarmActions", "okActions", "insufficientDataActions"):
            assert not registration.inputs.get(key), f"{registration.urn}: {key}"


def test_the_alarm_topic_hears_when_an_alarm_fires_and_when_it_clears(alarmed_run: ProgramRun) -> None:
    for registration in alarmed_run.of_type(METRIC_ALARM):
        assert registration.inputs["alarmActions"] == [ALARM_TOPIC_ARN], registration.urn
        assert registration.inputs["okActions"] == [ALARM_TOPIC_ARN], registration.urn
        assert not registration.inputs.get("insufficientDataActions"), registration.urn
    assert len(alarmed_run.of_type(METRIC_ALARM)) == 2
