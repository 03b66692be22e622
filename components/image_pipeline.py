"""The ImagePipeline component: upload bucket -> Lambda (Pillow layer) -> processed bucket.

Rejected uploads go to a third, quarantine bucket rather than a prefix of the processed one:
the processed bucket is what a CDN or website serves, and an origin must never be able to
expose a hostile file, however its paths are configured.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from components.code import handler_archive
from components.config import PipelineSettings
from components.naming import FUNCTION_ROLE, SUFFIX_BYTES, bucket_name_prefix
from components.policies import lambda_assume_role_policy, least_privilege_policy, tls_only_bucket_policy
from handler.variants import variants_to_json

COMPONENT_TYPE = "image-pipeline:index:ImagePipeline"
HANDLER_ENTRY_POINT = "handler.app.handler"
MAX_RETRY_ATTEMPTS = 2
# Incomplete multipart uploads are invisible and billed; a week is ample for a resumable upload.
ABORT_MULTIPART_AFTER_DAYS = 7
# Alarms judge one 5-minute period: one failed upload makes one notification, not a flapping
# stream, and it still arrives within minutes.
ALARM_PERIOD_SECONDS = 300


@dataclass(frozen=True)
class ImagePipelineArgs:
    """Everything the component needs, validated by the caller (the component reads no config)."""

    name_prefix: str
    """`<project>-<stack>`, validated by `components.naming.name_prefix`; every physical name starts with it."""
    region: str
    """`aws:region`, the region of the provider the component is given; KMS grants name S3 in it."""
    settings: PipelineSettings
    """The stack's validated settings (`components.config.parse_config`)."""
    layer_zip: Path
    """The Pillow layer zip built by `layer_build` for `runtime` and `architecture`."""
    layer_source_code_hash: str
    """Base64 SHA-256 of `layer_zip`: a new layer version is published only when it changes."""
    handler_dir: Path
    """The `handler/` package; its `.py` files become the function code."""
    handler_bytecode: Mapping[str, Path] = field(default_factory=dict)
    """Archive path -> `.pyc` of the handler's modules, compiled for the runtime (`layerBytecode`); empty: none."""


class ImagePipeline(pulumi.ComponentResource):
    """Private, encrypted buckets, the resize function with its layer, role, logs, dead-letter queue and alarms."""

    upload_bucket: pulumi.Output[str]
    processed_bucket: pulumi.Output[str]
    quarantine_bucket: pulumi.Output[str]
    function_name: pulumi.Output[str]
    function_arn: pulumi.Output[str]
    layer_arn: pulumi.Output[str]
    dead_letter_queue_url: pulumi.Output[str]
    log_group_name: pulumi.Output[str]
    dead_letter_alarm_name: pulumi.Output[str]
    function_errors_alarm_name: pulumi.Output[str]

    def __init__(self, name: str, args: ImagePipelineArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(COMPONENT_TYPE, name, {}, opts)
        self._name = name
        self._args = args
        self._settings = args.settings
        self._child = pulumi.ResourceOptions(parent=self)

        suffix = random.RandomId(f"{name}-suffix", byte_length=SUFFIX_BYTES, opts=self._child)
        self._suffix_hex = suffix.hex
        upload = self._private_bucket("upload")
        processed = self._private_bucket("processed")
        quarantine = self._private_bucket(
            "quarantine", expire_current_after_days=self._settings.quarantine_expiration_days
        )
        function_name = pulumi.Output.concat(args.name_prefix, f"-{FUNCTION_ROLE}-", self._suffix_hex)
        log_group = self._log_group(function_name)
        queue = self._dead_letter_queue()
        role, role_policy = self._role(upload, processed, quarantine, log_group, queue)
        layer = self._layer()
        function = self._function(
            function_name=function_name,
            role=role,
            layer=layer,
            processed=processed,
            quarantine=quarantine,
            ready_first=[log_group, role_policy],
        )
        self._failure_destination(function, queue)
        self._notification(upload, function)
        dead_letter_alarm = self._dead_letter_alarm(queue)
        errors_alarm = self._function_errors_alarm(function)

        self.upload_bucket = upload.bucket
        self.processed_bucket = processed.bucket
        self.quarantine_bucket = quarantine.bucket
        self.function_name = function.name
        self.function_arn = function.arn
        self.layer_arn = layer.arn
        self.dead_letter_queue_url = queue.url
        self.log_group_name = log_group.name
        self.dead_letter_alarm_name = dead_letter_alarm.name
        self.function_errors_alarm_name = errors_alarm.name
        self.register_outputs(
            {
                "upload_bucket": self.upload_bucket,
                "processed_bucket": self.processed_bucket,
                "quarantine_bucket": self.quarantine_bucket,
                "function_name": self.function_name,
                "function_arn": self.function_arn,
                "layer_arn": self.layer_arn,
                "dead_letter_queue_url": self.dead_letter_queue_url,
                "log_group_name": self.log_group_name,
                "dead_letter_alarm_name": self.dead_letter_alarm_name,
                "function_errors_alarm_name": self.function_errors_alarm_name,
            }
        )

    def _private_bucket(self, role: str, *, expire_current_after_days: int | None = None) -> aws.s3.Bucket:
        """A versioned, encrypted bucket that only TLS requests from this account's principals can reach."""
        args, settings = self._args, self._settings
        bucket = aws.s3.Bucket(
            f"{self._name}-{role}",
            bucket=pulumi.Output.concat(bucket_name_prefix(args.name_prefix, role), self._suffix_hex),
            force_destroy=not settings.protect_data,
            opts=pulumi.ResourceOptions(
                parent=self, protect=settings.protect_data, retain_on_delete=settings.protect_data
            ),
        )
        # Protection is inherited from the bucket; retention is not, and a retained bucket must keep
        # its encryption, public-access block and TLS policy, so its configuration is retained too.
        on_bucket = pulumi.ResourceOptions(parent=bucket, retain_on_delete=settings.protect_data)
        versioning = aws.s3.BucketVersioning(
            f"{self._name}-{role}-versioning",
            bucket=bucket.bucket,
            versioning_configuration={"status": "Enabled"},
            opts=on_bucket,
        )
        encryption_default: dict[str, str] = {"sse_algorithm": "AES256"}
        if settings.kms_key_arn is not None:
            encryption_default = {"sse_algorithm": "aws:kms", "kms_master_key_id": settings.kms_key_arn}
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{self._name}-{role}-encryption",
            bucket=bucket.bucket,
            rules=[
                {
                    "apply_server_side_encryption_by_default": encryption_default,
                    # A bucket key cuts KMS requests (and cost) per object; meaningless for AES256.
                    "bucket_key_enabled": settings.kms_key_arn is not None,
                }
            ],
            opts=on_bucket,
        )
        public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{self._name}-{role}-public-access-block",
            bucket=bucket.bucket,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=on_bucket,
        )
        aws.s3.BucketOwnershipControls(
            f"{self._name}-{role}-ownership",
            bucket=bucket.bucket,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=on_bucket,
        )
        aws.s3.BucketPolicy(
            f"{self._name}-{role}-tls-only",
            bucket=bucket.bucket,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_bucket_policy(arn))),
            # S3 rejects concurrent configuration changes on one bucket (OperationAborted).
            opts=pulumi.ResourceOptions.merge(on_bucket, pulumi.ResourceOptions(depends_on=[public_access_block])),
        )
        rule: dict[str, object] = {
            "id": "expire-noncurrent-versions",
            "status": "Enabled",
            "filter": {},
            "noncurrent_version_expiration": {"noncurrent_days": settings.noncurrent_version_days},
            "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_AFTER_DAYS},
        }
        if expire_current_after_days is not None:
            # Expiring by age also removes the delete markers it leaves behind (S3 does both).
            rule["id"] = "expire-quarantined-objects"
            rule["expiration"] = {"days": expire_current_after_days}
        else:
            # A deleted object leaves a delete marker; once its noncurrent versions expire, the marker
            # alone remains, forever, unless the rule expires it too.
            rule["expiration"] = {"expired_object_delete_marker": True}
        aws.s3.BucketLifecycleConfiguration(
            f"{self._name}-{role}-lifecycle",
            bucket=bucket.bucket,
            rules=[rule],
            # Noncurrent-version rules need versioning enabled first.
            opts=pulumi.ResourceOptions.merge(on_bucket, pulumi.ResourceOptions(depends_on=[versioning])),
        )
        return bucket

    def _log_group(self, function_name: pulumi.Output[str]) -> aws.cloudwatch.LogGroup:
        """Created before the function, so Lambda never creates it with unlimited retention."""
        return aws.cloudwatch.LogGroup(
            f"{self._name}-logs",
            name=pulumi.Output.concat("/aws/lambda/", function_name),
            retention_in_days=self._settings.log_retention_days,
            opts=self._child,
        )

    def _dead_letter_queue(self) -> aws.sqs.Queue:
        """Where events land after the retries: they hold object keys, so encrypted, and they age out.

        SQS-managed SSE even with `kmsKeyArn`: the queue is the last place a failed event can go, and
        Lambda drops an event it cannot deliver there, so no key policy or disabled key may stand in
        the way (and the role then needs no KMS grant through SQS).
        """
        return aws.sqs.Queue(
            f"{self._name}-dead-letter",
            name=pulumi.Output.concat(self._args.name_prefix, "-dead-letter-", self._suffix_hex),
            sqs_managed_sse_enabled=True,
            message_retention_seconds=self._settings.dead_letter_retention_days * 86400,
            opts=self._child,
        )

    def _role(
        self,
        upload: aws.s3.Bucket,
        processed: aws.s3.Bucket,
        quarantine: aws.s3.Bucket,
        log_group: aws.cloudwatch.LogGroup,
        queue: aws.sqs.Queue,
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        role = aws.iam.Role(
            f"{self._name}-function-role",
            assume_role_policy=json.dumps(lambda_assume_role_policy()),
            opts=self._child,
        )
        kms_key_arn, region = self._settings.kms_key_arn, self._args.region
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        resources = [upload.arn, processed.arn, quarantine.arn, log_group.arn, queue.arn, partition.dns_suffix]
        policy = pulumi.Output.all(*resources).apply(
            lambda arns: json.dumps(
                least_privilege_policy(
                    upload_bucket_arn=arns[0],
                    processed_bucket_arn=arns[1],
                    quarantine_bucket_arn=arns[2],
                    log_group_arn=arns[3],
                    dead_letter_queue_arn=arns[4],
                    kms_key_arn=kms_key_arn,
                    region=region,
                    dns_suffix=arns[5],
                )
            )
        )
        role_policy = aws.iam.RolePolicy(f"{self._name}-function-policy", role=role.id, policy=policy, opts=self._child)
        return role, role_policy

    def _layer(self) -> aws.lambda_.LayerVersion:
        args, settings = self._args, self._settings
        return aws.lambda_.LayerVersion(
            f"{self._name}-pillow-layer",
            layer_name=f"{args.name_prefix}-pillow",
            code=pulumi.FileArchive(str(args.layer_zip)),
            source_code_hash=args.layer_source_code_hash,
            compatible_runtimes=[settings.runtime],
            compatible_architectures=[settings.architecture],
            description="Pillow and pi-heif for the image pipeline (built by layer_build)",
            opts=self._child,
        )

    def _function(
        self,
        *,
        function_name: pulumi.Output[str],
        role: aws.iam.Role,
        layer: aws.lambda_.LayerVersion,
        processed: aws.s3.Bucket,
        quarantine: aws.s3.Bucket,
        ready_first: list[pulumi.Resource],
    ) -> aws.lambda_.Function:
        """`ready_first`: the log group and the role's policy, so the first invocation can log and write."""
        args, settings = self._args, self._settings
        return aws.lambda_.Function(
            f"{self._name}-function",
            name=function_name,
            role=role.arn,
            runtime=settings.runtime,
            architectures=[settings.architecture],
            handler=HANDLER_ENTRY_POINT,
            code=handler_archive(args.handler_dir, HANDLER_ENTRY_POINT, args.handler_bytecode),
            layers=[layer.arn],
            memory_size=settings.memory_mb,
            timeout=settings.timeout_seconds,
            reserved_concurrent_executions=settings.reserved_concurrency,
            environment={
                "variables": {
                    "PROCESSED_BUCKET": processed.bucket,
                    "QUARANTINE_BUCKET": quarantine.bucket,
                    "VARIANTS": variants_to_json(settings.variants),
                    "LOG_LEVEL": settings.log_level,
                    "PIXEL_LIMIT": str(settings.pixel_limit),
                    "MAX_UPLOAD_BYTES": str(settings.max_upload_bytes),
                }
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=ready_first),
        )

    def _failure_destination(self, function: aws.lambda_.Function, queue: aws.sqs.Queue) -> None:
        """S3 invokes asynchronously: retry twice, then hand the event to the dead-letter queue."""
        aws.lambda_.FunctionEventInvokeConfig(
            f"{self._name}-async-invoke",
            function_name=function.name,
            maximum_retry_attempts=MAX_RETRY_ATTEMPTS,
            maximum_event_age_in_seconds=self._settings.max_event_age_seconds,
            destination_config={"on_failure": {"destination": queue.arn}},
            opts=self._child,
        )

    def _notification(self, upload: aws.s3.Bucket, function: aws.lambda_.Function) -> None:
        # source_account as well as source_arn: bucket names are global, so a deleted bucket's
        # name re-created in another account must not be able to invoke the function.
        account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        permission = aws.lambda_.Permission(
            f"{self._name}-allow-s3",
            action="lambda:InvokeFunction",
            function=function.name,
            principal="s3.amazonaws.com",
            source_arn=upload.arn,
            source_account=account_id,
            opts=self._child,
        )
        trigger: dict[str, object] = {"lambda_function_arn": function.arn, "events": ["s3:ObjectCreated:*"]}
        if self._settings.upload_prefix:
            trigger["filter_prefix"] = self._settings.upload_prefix
        if self._settings.upload_suffix:
            trigger["filter_suffix"] = self._settings.upload_suffix
        aws.s3.BucketNotification(
            f"{self._name}-upload-notification",
            bucket=upload.bucket,
            lambda_functions=[trigger],
            # S3 tests the destination when the notification is saved; without the permission it fails.
            # A child of the component, not of the (protected, retained) bucket: it goes with the function.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[permission]),
        )

    def _dead_letter_alarm(self, queue: aws.sqs.Queue) -> aws.cloudwatch.MetricAlarm:
        """An event in the dead-letter queue is an upload that was neither processed nor quarantined.

        The alarm stays on until someone empties the queue or the events age out.
        """
        return self._any_above_zero_alarm(
            "dead-letter-alarm",
            physical_role="dead-letter-not-empty",
            description=pulumi.Output.concat(
                "S3 events the image function still failed on after its retries are waiting in ",
                queue.name,
                ": read them (aws sqs receive-message), fix the cause, then upload those files again.",
            ),
            namespace="AWS/SQS",
            metric_name="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": queue.name},
            statistic="Maximum",
        )

    def _function_errors_alarm(self, function: aws.lambda_.Function) -> aws.cloudwatch.MetricAlarm:
        """A function error is an upload that failed and is retried, then dead-lettered.

        Errors rather than Throttles: Lambda keeps a throttled asynchronous event and retries it for
        up to `maxEventAgeSeconds`, so throttling only delays uploads, and one that waits too long is
        dead-lettered, which the other alarm reports. A rejected upload is quarantined by a
        successful invocation, so it is not an error.
        """
        return self._any_above_zero_alarm(
            "errors-alarm",
            physical_role=f"{FUNCTION_ROLE}-errors",
            description=pulumi.Output.concat(
                "The image function ",
                function.name,
                " failed on an upload (crash, timeout, out of memory, S3 refused or unavailable). Lambda "
                f"tries it {MAX_RETRY_ATTEMPTS} more times, then sends the event to the dead-letter queue; "
                "the reason is in the function's log group.",
            ),
            namespace="AWS/Lambda",
            metric_name="Errors",
            dimensions={"FunctionName": function.name},
            statistic="Sum",
        )

    def _any_above_zero_alarm(
        self,
        role: str,
        *,
        physical_role: str,
        description: pulumi.Output[str],
        namespace: str,
        metric_name: str,
        dimensions: dict[str, pulumi.Output[str]],
        statistic: str,
    ) -> aws.cloudwatch.MetricAlarm:
        """One period above zero fires it. No data is OK: Lambda publishes nothing while idle, nor
        SQS for an empty, idle queue. `alarmTopicArn` hears both the alarm and its end."""
        topic = self._settings.alarm_topic_arn
        actions = None if topic is None else [topic]
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{role}",
            name=pulumi.Output.concat(self._args.name_prefix, f"-{physical_role}-", self._suffix_hex),
            alarm_description=description,
            namespace=namespace,
            metric_name=metric_name,
            dimensions=dimensions,
            statistic=statistic,
            period=ALARM_PERIOD_SECONDS,
            evaluation_periods=1,
            threshold=0,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching",
            alarm_actions=actions,
            ok_actions=actions,
            opts=self._child,
        )
