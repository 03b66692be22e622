"""The emulator's infrastructure half: the real program deployed, IAM enforced, strict deployer.

One emulator and one deployment of the dev stack for the whole module (deploying takes seconds);
the handler's behaviour end to end is in test_e2e_pipeline.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import botocore.exceptions
import pulumi
import pytest

from local.deployer import DeployError, EmulatorDeployer, UnknownResourceTypeError, deploy, stack_region
from local.emulator import Credentials, Emulator, UnsupportedPolicyConditionError, applicable_statements
from local.lambda_service import LambdaService
from local.program import ProgramRun

pytestmark = pytest.mark.e2e


class Deployed:
    def __init__(self, emulator: Emulator, lambda_service: LambdaService, run: ProgramRun) -> None:
        self.emulator = emulator
        self.lambda_service = lambda_service
        self.run = run
        self.upload = run.outputs["upload_bucket"]
        self.processed = run.outputs["processed_bucket"]
        self.quarantine = run.outputs["quarantine_location"].removeprefix("s3://").rstrip("/")
        self.function_arn = run.outputs["function_arn"]

    def role_client(self, service: str) -> Any:
        function = self.lambda_service.function(self.function_arn)
        return self.emulator.client(service, self.lambda_service.role_credentials(function))


@pytest.fixture(scope="module")
def deployed() -> Iterator[Deployed]:
    with Emulator(stack_region("dev")) as emulator, LambdaService(emulator) as lambda_service:
        yield Deployed(emulator, lambda_service, deploy("dev", emulator, lambda_service))


def test_outputs_name_resources_that_exist_in_the_emulator(deployed: Deployed) -> None:
    s3 = deployed.emulator.client("s3")
    for bucket in (deployed.upload, deployed.processed, deployed.quarantine):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled", bucket
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", bucket
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4, bucket
        tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
        assert tags["stack"] == "dev" and tags["managed-by"] == "pulumi", "provider default_tags must apply"
    policies = deployed.run.of_type("aws:s3/bucketPolicy:BucketPolicy")
    declared = {r.inputs["bucket"]: r.inputs["policy"] for r in policies}
    assert json.loads(s3.get_bucket_policy(Bucket=deployed.upload)["Policy"]) == json.loads(declared[deployed.upload])

    notification = s3.get_bucket_notification_configuration(Bucket=deployed.upload)
    [trigger] = notification["LambdaFunctionConfigurations"]
    assert trigger["LambdaFunctionArn"] == deployed.function_arn
    assert trigger["Events"] == ["s3:ObjectCreated:*"]

    lambda_client = deployed.emulator.client("lambda")
    name = deployed.run.outputs["function_name"]
    invoke_config = lambda_client.get_function_event_invoke_config(FunctionName=name)
    queue_arn = deployed.emulator.client("sqs").get_queue_attributes(
        QueueUrl=deployed.run.outputs["dead_letter_queue_url"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert invoke_config["MaximumRetryAttempts"] == 2
    assert invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn
    variables = lambda_client.get_function_configuration(FunctionName=name)["Environment"]["Variables"]
    assert variables["PROCESSED_BUCKET"] == deployed.processed
    assert variables["QUARANTINE_BUCKET"] == deployed.quarantine


def test_the_alarms_watch_the_deployed_queue_and_function(deployed: Deployed) -> None:
    cloudwatch = deployed.emulator.client("cloudwatch")
    names = [deployed.run.outputs["dead_letter_alarm_name"], deployed.run.outputs["function_errors_alarm_name"]]
    alarms = {a["AlarmName"]: a for a in cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]}
    assert sorted(alarms) == sorted(names)
    queue_name = deployed.run.outputs["dead_letter_queue_url"].rsplit("/", 1)[1]
    dead_letter = alarms[names[0]]
    assert (dead_letter["Namespace"], dead_letter["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dead_letter["Dimensions"] == [{"Name": "QueueName", "Value": queue_name}]
    errors = alarms[names[1]]
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": deployed.run.outputs["function_name"]}]
    for alarm in alarms.values():
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0.0)
        assert alarm["TreatMissingData"] == "notBreaching"
        assert not alarm["AlarmActions"], "dev sets no alarmTopicArn"
        tags = {t["Key"]: t["Value"] for t in cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]}
        assert tags["stack"] == "dev" and tags["managed-by"] == "pulumi", "provider default_tags must apply"


def test_unknown_credentials_are_refused(deployed: Deployed) -> None:
    stranger = deployed.emulator.client("s3", Credentials("AKIAEXAMPLESTRANGER", "not-a-real-secret"))
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        stranger.list_objects_v2(Bucket=deployed.upload)
    assert raised.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_role_can_read_uploads_and_write_outputs(deployed: Deployed) -> None:
    deployed.emulator.client("s3").put_object(Bucket=deployed.upload, Key="iam/readable.txt", Body=b"x")
    s3 = deployed.role_client("s3")
    assert s3.get_object(Bucket=deployed.upload, Key="iam/readable.txt")["Body"].read() == b"x"
    s3.put_object(Bucket=deployed.processed, Key="iam/variant.txt", Body=b"v")
    s3.put_object(Bucket=deployed.quarantine, Key="iam/quarantined.txt", Body=b"q")
    sqs = deployed.role_client("sqs")
    sqs.send_message(QueueUrl=deployed.run.outputs["dead_letter_queue_url"], MessageBody="{}")


DENIALS: dict[str, Callable[[Deployed, Any], Any]] = {
    "delete an upload": lambda d, s3: s3.delete_object(Bucket=d.upload, Key="iam/readable.txt"),
    "write to the upload bucket": lambda d, s3: s3.put_object(Bucket=d.upload, Key="iam/loop.jpg", Body=b"x"),
    "list the upload bucket": lambda d, s3: s3.list_objects_v2(Bucket=d.upload),
    "read the processed bucket": lambda d, s3: s3.get_object(Bucket=d.processed, Key="iam/variant.txt"),
    "list the processed bucket": lambda d, s3: s3.list_objects_v2(Bucket=d.processed),
    "delete a variant": lambda d, s3: s3.delete_object(Bucket=d.processed, Key="iam/variant.txt"),
    "read the quarantine bucket": lambda d, s3: s3.get_object(Bucket=d.quarantine, Key="iam/quarantined.txt"),
    "read another bucket": lambda d, s3: s3.get_object(Bucket="unrelated-emulator-bucket", Key="secret.txt"),
    "write another bucket": lambda d, s3: s3.put_object(Bucket="unrelated-emulator-bucket", Key="x", Body=b"x"),
    "list all buckets": lambda d, s3: s3.list_buckets(),
    "change a bucket policy": lambda d, s3: s3.delete_bucket_policy(Bucket=d.upload),
}


@pytest.fixture(scope="module", autouse=True)
def unrelated_bucket(deployed: Deployed) -> None:
    """A bucket of the same account that the pipeline has no business with."""
    admin = deployed.emulator.client("s3")
    create: dict[str, Any] = {"Bucket": "unrelated-emulator-bucket"}
    if deployed.emulator.region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": deployed.emulator.region}
    admin.create_bucket(**create)
    admin.put_object(Bucket="unrelated-emulator-bucket", Key="secret.txt", Body=b"s")


@pytest.mark.parametrize("action", sorted(DENIALS))
def test_role_is_denied_what_its_policy_does_not_grant(deployed: Deployed, action: str) -> None:
    admin = deployed.emulator.client("s3")
    admin.put_object(Bucket=deployed.upload, Key="iam/readable.txt", Body=b"x")
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        DENIALS[action](deployed, deployed.role_client("s3"))
    assert raised.value.response["Error"]["Code"] == "AccessDenied", action
    assert admin.get_object(Bucket=deployed.upload, Key="iam/readable.txt")["Body"].read() == b"x"


def test_role_cannot_manage_iam_or_other_queues(deployed: Deployed) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        deployed.role_client("iam").list_roles()
    assert raised.value.response["Error"]["Code"] == "AccessDenied"
    other = deployed.emulator.client("sqs").create_queue(QueueName="unrelated-queue")["QueueUrl"]
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        deployed.role_client("sqs").send_message(QueueUrl=other, MessageBody="{}")
    # moto answers SQS's JSON protocol with an XML error body, so only the status is reliable.
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_only_lambda_may_assume_the_function_role(deployed: Deployed) -> None:
    role_arn = deployed.run.one("aws:iam/role:Role").state["arn"]
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        deployed.emulator.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="not-lambda")
    assert raised.value.response["Error"]["Code"] == "AccessDenied", "the trust policy names only lambda.amazonaws.com"


def _args(type_token: str, name: str, inputs: dict[str, Any]) -> pulumi.runtime.MockResourceArgs:
    return pulumi.runtime.MockResourceArgs(
        typ=type_token, name=name, inputs=inputs, provider="", resource_id="", custom=True
    )


def test_deployer_refuses_an_unknown_resource_type_by_name(deployed: Deployed, tmp_path: Any) -> None:
    deployer = EmulatorDeployer(deployed.emulator, deployed.lambda_service, project_dir=tmp_path, work_dir=tmp_path)
    with pytest.raises(UnknownResourceTypeError, match=r"aws:ec2/instance:Instance .*'web'"):
        deployer.new_resource(_args("aws:ec2/instance:Instance", "web", {"instanceType": "t4g.micro"}))


def test_deployer_refuses_an_input_it_would_ignore(deployed: Deployed, tmp_path: Any) -> None:
    deployer = EmulatorDeployer(deployed.emulator, deployed.lambda_service, project_dir=tmp_path, work_dir=tmp_path)
    with pytest.raises(DeployError, match=r"aws:sqs/queue:Queue 'q'.*\['fifoQueue'\]"):
        deployer.new_resource(_args("aws:sqs/queue:Queue", "q", {"name": "q", "fifoQueue": True}))


def test_deployer_refuses_a_notification_s3_could_not_validate(deployed: Deployed, tmp_path: Any) -> None:
    deployer = EmulatorDeployer(deployed.emulator, deployed.lambda_service, project_dir=tmp_path, work_dir=tmp_path)
    trigger = {"lambdaFunctionArn": deployed.function_arn, "events": ["s3:ObjectCreated:*"]}
    with pytest.raises(DeployError, match="Unable to validate the following destination"):
        inputs = {"bucket": deployed.processed, "lambdaFunctions": [trigger]}
        deployer.new_resource(_args("aws:s3/bucketNotification:BucketNotification", "n", inputs))


def test_bucket_policies_are_enforced_and_the_tls_only_deny_lets_tls_through(deployed: Deployed) -> None:
    admin = deployed.emulator.client("s3")
    admin.put_object(Bucket=deployed.upload, Key="policy/tls.txt", Body=b"t")
    assert admin.get_object(Bucket=deployed.upload, Key="policy/tls.txt")["Body"].read() == b"t"
    deny_reads = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::unrelated-emulator-bucket/secret.txt",
            }
        ],
    }
    admin.put_bucket_policy(Bucket="unrelated-emulator-bucket", Policy=json.dumps(deny_reads))
    try:
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            admin.get_object(Bucket="unrelated-emulator-bucket", Key="secret.txt")
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403, "even the administrator"
    finally:
        admin.delete_bucket_policy(Bucket="unrelated-emulator-bucket")


def test_bucket_policy_conditions_resolve_for_tls_and_refuse_the_rest() -> None:
    deny_plain_http = {
        "Statement": [{"Effect": "Deny", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]
    }
    assert applicable_statements(deny_plain_http, secure_transport=True) == []
    assert applicable_statements(deny_plain_http, secure_transport=False) == [{"Effect": "Deny", "Action": "s3:*"}]
    by_ip = {"Statement": [{"Sid": "ip", "Effect": "Deny", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}
    with pytest.raises(UnsupportedPolicyConditionError, match="IpAddress aws:SourceIp"):
        applicable_statements(by_ip, secure_transport=True)


def test_fault_injection_answers_503_slow_down(deployed: Deployed) -> None:
    # A bucket without a notification: the function must not consume the fault first.
    admin = deployed.emulator.client("s3")
    admin.put_object(Bucket="unrelated-emulator-bucket", Key="faults/flaky.txt", Body=b"f")
    assert deployed.emulator.faults is not None
    rule = deployed.emulator.faults.fail("GET", "unrelated-emulator-bucket", "faults/flaky.txt", times=1)
    response = admin.get_object(Bucket="unrelated-emulator-bucket", Key="faults/flaky.txt")
    assert response["Body"].read() == b"f"
    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert rule.hits == 1
