"""Deploy the real Pulumi program into the emulator: a `Mocks` that creates each resource with boto3.

`local.program.run_program` runs `__main__.py` under these mocks, so the one definition of the
infrastructure (the ImagePipeline component) is what gets created: for every resource the program
registers, `new_resource` makes the matching API calls as the emulator's administrator and returns
the real id and attributes (ARNs, names, URLs) the AWS provider would. Resources arrive in
dependency order, as Pulumi would create them. The deployer is strict: a resource type, an input
or an invoke it does not implement is an error naming it, never silently skipped.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import secrets
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pulumi

from local.archives import extract, zip_bytes
from local.emulator import Emulator, applicable_statements
from local.lambda_service import AsyncConfig, FunctionSpec, LambdaService
from local.program import PROJECT_DIR, ProgramRun, load_stack_config, run_program

log = logging.getLogger(__name__)

ResourceResult = tuple[str, dict[str, Any]]
Creator = Callable[[str, dict[str, Any], dict[str, str]], ResourceResult]
TAGGABLE = frozenset(
    {
        "aws:s3/bucket:Bucket",
        "aws:iam/role:Role",
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aws:sqs/queue:Queue",
        "aws:lambda/function:Function",
    }
)


class DeployError(RuntimeError):
    """The emulator cannot create what the program declared, or AWS would refuse it."""


class UnknownResourceTypeError(DeployError):
    """The program declared a resource type the emulator deployer does not implement."""


def _autoname(name: str) -> str:
    """Pulumi's auto-naming: the logical name plus a random suffix."""
    return f"{name}-{secrets.token_hex(4)[:7]}"


def _pascal(value: Any) -> Any:
    """Pulumi's camelCase nested inputs -> the API's PascalCase shapes (`id` -> `ID`)."""
    if isinstance(value, Mapping):
        return {("ID" if key == "id" else key[:1].upper() + key[1:]): _pascal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_pascal(item) for item in value]
    return _number(value)


def _number(value: Any) -> Any:
    """Pulumi numbers are floats; the AWS APIs want integers where they are whole."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _check_inputs(type_token: str, name: str, inputs: Mapping[str, Any], allowed: set[str]) -> None:
    unsupported = sorted(key for key, value in inputs.items() if value not in (None, [], {}) and key not in allowed)
    if unsupported:
        raise DeployError(f"{type_token} {name!r}: the emulator deployer does not implement input(s) {unsupported}")


def _provider_value(value: Any) -> Any:
    """Provider inputs arrive as strings; structured ones (defaultTags) are JSON text."""
    return json.loads(value) if isinstance(value, str) else value


def stand_in_layer_zip(directory: Path) -> Path:
    """A tiny layer zip: in the emulator the handler imports the virtualenv's Pillow instead.

    It holds only the `python/PIL/__init__.py` that `layer_build.artifact_for` requires of any
    `layerZip`; the Lambda service never puts layers on the handler's path, so it shadows nothing.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "stand-in-layer.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("python/PIL/__init__.py", date_time=(1980, 1, 1, 0, 0, 0))
        archive.writestr(info, "# Stand-in: the local emulator runs the handler with the virtualenv's Pillow.\n")
    return path


class EmulatorDeployer(pulumi.runtime.Mocks):
    """Creates each registered resource in the emulator and registers functions with the Lambda service."""

    def __init__(self, emulator: Emulator, lambda_service: LambdaService, *, project_dir: Path, work_dir: Path) -> None:
        self._emulator = emulator
        self._lambda_service = lambda_service
        self._project_dir = project_dir
        self._work_dir = work_dir
        self._providers: dict[str, dict[str, Any]] = {}
        self._clients: dict[str, Any] = {}
        self._creators: dict[str, tuple[set[str], Creator]] = {
            "pulumi:providers:aws": (
                {"region", "defaultTags", "version", "skipCredentialsValidation", "skipRegionValidation"},
                self._aws_provider,
            ),
            "random:index/randomId:RandomId": ({"byteLength", "prefix", "keepers"}, self._random_id),
            "aws:s3/bucket:Bucket": ({"bucket", "bucketPrefix", "forceDestroy", "tags"}, self._bucket),
            "aws:s3/bucketVersioning:BucketVersioning": ({"bucket", "versioningConfiguration"}, self._versioning),
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": (
                {"bucket", "rules"},
                self._encryption,
            ),
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": (
                {"bucket", "blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"},
                self._public_access_block,
            ),
            "aws:s3/bucketOwnershipControls:BucketOwnershipControls": ({"bucket", "rule"}, self._ownership),
            "aws:s3/bucketPolicy:BucketPolicy": ({"bucket", "policy"}, self._bucket_policy),
            "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": ({"bucket", "rules"}, self._lifecycle),
            "aws:s3/bucketNotification:BucketNotification": ({"bucket", "lambdaFunctions"}, self._notification),
            "aws:iam/role:Role": (
                {"name", "namePrefix", "assumeRolePolicy", "description", "path", "maxSessionDuration", "tags"},
                self._role,
            ),
            "aws:iam/rolePolicy:RolePolicy": ({"name", "namePrefix", "role", "policy"}, self._role_policy),
            "aws:cloudwatch/logGroup:LogGroup": ({"name", "retentionInDays", "tags"}, self._log_group),
            "aws:cloudwatch/metricAlarm:MetricAlarm": (
                {
                    "name",
                    "alarmDescription",
                    "namespace",
                    "metricName",
                    "dimensions",
                    "statistic",
                    "period",
                    "evaluationPeriods",
                    "datapointsToAlarm",
                    "threshold",
                    "comparisonOperator",
                    "treatMissingData",
                    "actionsEnabled",
                    "alarmActions",
                    "okActions",
                    "insufficientDataActions",
                    "tags",
                },
                self._metric_alarm,
            ),
            "aws:sqs/queue:Queue": (
                {
                    "name",
                    "sqsManagedSseEnabled",
                    "messageRetentionSeconds",
                    "visibilityTimeoutSeconds",
                    "delaySeconds",
                    "receiveWaitTimeSeconds",
                    "tags",
                },
                self._queue,
            ),
            "aws:lambda/layerVersion:LayerVersion": (
                {
                    "layerName",
                    "code",
                    "sourceCodeHash",
                    "compatibleRuntimes",
                    "compatibleArchitectures",
                    "description",
                    "licenseInfo",
                },
                self._layer,
            ),
            "aws:lambda/function:Function": (
                {
                    "name",
                    "role",
                    "runtime",
                    "architectures",
                    "handler",
                    "code",
                    "sourceCodeHash",
                    "layers",
                    "memorySize",
                    "timeout",
                    "reservedConcurrentExecutions",
                    "environment",
                    "deadLetterConfig",
                    "description",
                    "tags",
                },
                self._function,
            ),
            "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig": (
                {"functionName", "maximumRetryAttempts", "maximumEventAgeInSeconds", "destinationConfig"},
                self._invoke_config,
            ),
            "aws:lambda/permission:Permission": (
                {"action", "function", "principal", "sourceArn", "sourceAccount", "statementId"},
                self._permission,
            ),
        }

    # Mocks interface ---------------------------------------------------------------------------
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if not args.custom:  # component resources exist only in Pulumi's graph
            return "", {}
        entry = self._creators.get(args.typ)
        if entry is None:
            raise UnknownResourceTypeError(
                f"the emulator deployer does not know resource type {args.typ} (resource {args.name!r}); "
                "implement it in local/deployer.py"
            )
        allowed, creator = entry
        inputs = dict(args.inputs)
        _check_inputs(args.typ, args.name, inputs, allowed)
        provider = self._providers.get(args.provider.rpartition("::")[2], {}) if args.provider else {}
        if args.typ in TAGGABLE:
            default_tags = (_provider_value(provider.get("defaultTags")) or {}).get("tags") or {}
            inputs["tagsAll"] = {**default_tags, **(inputs.get("tags") or {})}
        resource_id, state = creator(args.name, inputs, provider)
        log.debug("created %s %s -> %s", args.typ, args.name, resource_id)
        return resource_id, {**inputs, **state}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        region = self._emulator.region
        partition = self._emulator.partition
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            identity = self._client("sts").get_caller_identity()
            return {
                "accountId": identity["Account"],
                "arn": identity["Arn"],
                "userId": identity["UserId"],
                "id": identity["Account"],
            }, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"id": region, "name": region, "region": region, "endpoint": self._emulator.endpoint}, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"id": partition, "partition": partition, "dnsSuffix": "amazonaws.com"}, []
        raise DeployError(f"the emulator deployer does not answer invoke {args.token}; add it in local/deployer.py")

    # helpers ---------------------------------------------------------------------------------
    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._emulator.client(service)
        return self._clients[service]

    def _region(self, provider: Mapping[str, Any]) -> str:
        region = provider.get("region") or self._emulator.region
        if region != self._emulator.region:
            raise DeployError(f"provider region {region} differs from the emulator's region {self._emulator.region}")
        return region

    @staticmethod
    def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
        return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]

    # providers and random ------------------------------------------------------------------------
    def _aws_provider(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        self._region(inputs)
        resource_id = f"{name}-{secrets.token_hex(4)}"
        self._providers[resource_id] = inputs
        return resource_id, {}

    def _random_id(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        raw = os.urandom(int(inputs["byteLength"]))
        prefix = inputs.get("prefix") or ""
        b64_url = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        state = {
            "hex": prefix + raw.hex(),
            "dec": prefix + str(int.from_bytes(raw, "big")),
            "b64Url": prefix + b64_url,
            "b64Std": prefix + base64.b64encode(raw).decode(),
        }
        return b64_url, state

    # S3 ----------------------------------------------------------------------------------------
    def _bucket(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        region = self._region(provider)
        bucket = inputs.get("bucket") or (
            inputs["bucketPrefix"] + secrets.token_hex(6) if inputs.get("bucketPrefix") else _autoname(name)
        )
        s3 = self._client("s3")
        create: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**create)
        if inputs["tagsAll"]:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": self._tag_list(inputs["tagsAll"])})
        partition = self._emulator.partition
        return bucket, {
            "bucket": bucket,
            "arn": f"arn:{partition}:s3:::{bucket}",
            "bucketDomainName": f"{bucket}.s3.amazonaws.com",
            "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com",
            "bucketRegion": region,
            "region": region,
        }

    def _versioning(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        self._client("s3").put_bucket_versioning(
            Bucket=inputs["bucket"], VersioningConfiguration=_pascal(inputs["versioningConfiguration"])
        )
        return inputs["bucket"], {}

    def _encryption(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        rules = _pascal(inputs["rules"])
        for rule in rules:
            default = rule.get("ApplyServerSideEncryptionByDefault") or {}
            if "KmsMasterKeyId" in default:
                default["KMSMasterKeyID"] = default.pop("KmsMasterKeyId")
            if "SseAlgorithm" in default:
                default["SSEAlgorithm"] = default.pop("SseAlgorithm")
        self._client("s3").put_bucket_encryption(
            Bucket=inputs["bucket"], ServerSideEncryptionConfiguration={"Rules": rules}
        )
        return inputs["bucket"], {}

    def _public_access_block(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        flags = ("blockPublicAcls", "ignorePublicAcls", "blockPublicPolicy", "restrictPublicBuckets")
        self._client("s3").put_public_access_block(
            Bucket=inputs["bucket"],
            PublicAccessBlockConfiguration={flag[0].upper() + flag[1:]: bool(inputs.get(flag)) for flag in flags},
        )
        return inputs["bucket"], {}

    def _ownership(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        self._client("s3").put_bucket_ownership_controls(
            Bucket=inputs["bucket"], OwnershipControls={"Rules": [_pascal(inputs["rule"])]}
        )
        return inputs["bucket"], {}

    def _bucket_policy(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        policy = inputs["policy"]
        applicable_statements(json.loads(policy), secure_transport=True)  # refuses conditions we cannot evaluate
        self._client("s3").put_bucket_policy(Bucket=inputs["bucket"], Policy=policy)
        return inputs["bucket"], {}

    def _lifecycle(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        rules = _pascal(inputs["rules"])
        for rule in rules:
            if not rule.get("Filter"):
                rule["Filter"] = {"Prefix": ""}  # the provider's "filter: {}" means every object
        self._client("s3").put_bucket_lifecycle_configuration(
            Bucket=inputs["bucket"], LifecycleConfiguration={"Rules": rules}
        )
        return inputs["bucket"], {}

    def _notification(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        bucket = inputs["bucket"]
        bucket_arn = f"arn:{self._emulator.partition}:s3:::{bucket}"
        configurations = []
        for index, trigger in enumerate(inputs.get("lambdaFunctions") or []):
            function_arn = trigger["lambdaFunctionArn"]
            self._require_s3_may_invoke(function_arn, bucket_arn)
            rules = [
                {"Name": kind, "Value": trigger[key]}
                for kind, key in (("prefix", "filterPrefix"), ("suffix", "filterSuffix"))
                if trigger.get(key)
            ]
            configuration: dict[str, Any] = {
                "Id": trigger.get("id") or f"tf-s3-lambda-{index}",
                "LambdaFunctionArn": function_arn,
                "Events": list(trigger["events"]),
            }
            if rules:
                configuration["Filter"] = {"Key": {"FilterRules": rules}}
            configurations.append(configuration)
        self._client("s3").put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": configurations}
        )
        return bucket, {}

    def _require_s3_may_invoke(self, function_arn: str, bucket_arn: str) -> None:
        """S3 tests a Lambda destination when the notification is saved; so do we."""
        refusal = DeployError(
            f"S3 would refuse the notification on {bucket_arn}: Unable to validate the following destination "
            f"configurations ({function_arn} has no lambda:Permission for s3.amazonaws.com from this bucket; "
            "declare one and make the notification depend on it)"
        )
        try:
            # By name: moto miscomputes the signature of a path holding an escaped ARN.
            function_name = function_arn.split(":")[6]
            policy = json.loads(self._client("lambda").get_policy(FunctionName=function_name)["Policy"])
        except self._client("lambda").exceptions.ResourceNotFoundException:
            raise refusal from None
        for statement in policy.get("Statement", []):
            principal = statement.get("Principal")
            service = principal.get("Service") if isinstance(principal, Mapping) else principal
            source_arn = ((statement.get("Condition") or {}).get("ArnLike") or {}).get("AWS:SourceArn")
            if (
                statement.get("Effect") == "Allow"
                and service == "s3.amazonaws.com"
                and statement.get("Action") in ("lambda:InvokeFunction", "lambda:*")
                and source_arn in (None, bucket_arn)
            ):
                return
        raise refusal

    # IAM, logs, SQS --------------------------------------------------------------------------
    def _role(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        role_name = inputs.get("name") or (
            inputs["namePrefix"] + secrets.token_hex(6) if inputs.get("namePrefix") else _autoname(name)
        )
        create: dict[str, Any] = {
            "RoleName": role_name,
            "AssumeRolePolicyDocument": inputs["assumeRolePolicy"],
            "Path": inputs.get("path") or "/",
            "Tags": self._tag_list(inputs["tagsAll"]),
        }
        if inputs.get("description"):
            create["Description"] = inputs["description"]
        if inputs.get("maxSessionDuration"):
            create["MaxSessionDuration"] = int(inputs["maxSessionDuration"])
        role = self._client("iam").create_role(**create)["Role"]
        return role_name, {
            "name": role_name,
            "arn": role["Arn"],
            "uniqueId": role["RoleId"],
            "createDate": role["CreateDate"].isoformat(),
        }

    def _role_policy(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        policy_name = inputs.get("name") or (
            inputs["namePrefix"] + secrets.token_hex(6) if inputs.get("namePrefix") else _autoname(name)
        )
        self._client("iam").put_role_policy(
            RoleName=inputs["role"], PolicyName=policy_name, PolicyDocument=inputs["policy"]
        )
        return f"{inputs['role']}:{policy_name}", {"name": policy_name}

    def _log_group(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        group = inputs.get("name") or _autoname(name)
        logs = self._client("logs")
        logs.create_log_group(logGroupName=group, tags=inputs["tagsAll"])
        if inputs.get("retentionInDays"):
            logs.put_retention_policy(logGroupName=group, retentionInDays=int(inputs["retentionInDays"]))
        arn = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["arn"]
        # CloudWatch reports `...:log-group:<name>:*`; the provider's `arn` drops the `:*`.
        return group, {"name": group, "arn": arn.removesuffix(":*")}

    def _metric_alarm(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        """Stored as CloudWatch would store it; moto never evaluates it or notifies anyone."""
        alarm_name = inputs.get("name") or _autoname(name)
        request: dict[str, Any] = {
            "AlarmName": alarm_name,
            "Namespace": inputs["namespace"],
            "MetricName": inputs["metricName"],
            "Dimensions": [{"Name": key, "Value": value} for key, value in (inputs.get("dimensions") or {}).items()],
            "Statistic": inputs["statistic"],
            "Period": int(inputs["period"]),
            "EvaluationPeriods": int(inputs["evaluationPeriods"]),
            "Threshold": float(inputs["threshold"]),
            "ComparisonOperator": inputs["comparisonOperator"],
            "Tags": self._tag_list(inputs["tagsAll"]),
        }
        for api_key, key in (
            ("AlarmDescription", "alarmDescription"),
            ("TreatMissingData", "treatMissingData"),
            ("ActionsEnabled", "actionsEnabled"),
            ("AlarmActions", "alarmActions"),
            ("OKActions", "okActions"),
            ("InsufficientDataActions", "insufficientDataActions"),
        ):
            if inputs.get(key) is not None:
                request[api_key] = inputs[key]
        if inputs.get("datapointsToAlarm") is not None:
            request["DatapointsToAlarm"] = int(inputs["datapointsToAlarm"])
        cloudwatch = self._client("cloudwatch")
        cloudwatch.put_metric_alarm(**request)
        arn = cloudwatch.describe_alarms(AlarmNames=[alarm_name])["MetricAlarms"][0]["AlarmArn"]
        return alarm_name, {"name": alarm_name, "arn": arn}

    def _queue(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        queue_name = inputs.get("name") or _autoname(name)
        attribute_inputs = {
            "SqsManagedSseEnabled": "sqsManagedSseEnabled",
            "MessageRetentionPeriod": "messageRetentionSeconds",
            "VisibilityTimeout": "visibilityTimeoutSeconds",
            "DelaySeconds": "delaySeconds",
            "ReceiveMessageWaitTimeSeconds": "receiveWaitTimeSeconds",
        }
        attributes = {
            attribute: str(inputs[key]).lower() if isinstance(inputs[key], bool) else str(_number(inputs[key]))
            for attribute, key in attribute_inputs.items()
            if inputs.get(key) is not None
        }
        sqs = self._client("sqs")
        url = sqs.create_queue(QueueName=queue_name, Attributes=attributes, tags=inputs["tagsAll"])["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, {"name": queue_name, "arn": arn, "url": url}

    # Lambda ------------------------------------------------------------------------------------
    def _layer(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        publish: dict[str, Any] = {
            "LayerName": inputs["layerName"],
            "Content": {"ZipFile": zip_bytes(inputs["code"], self._project_dir)},
        }
        for api_key, key in (
            ("CompatibleRuntimes", "compatibleRuntimes"),
            ("CompatibleArchitectures", "compatibleArchitectures"),
            ("Description", "description"),
            ("LicenseInfo", "licenseInfo"),
        ):
            if inputs.get(key):
                publish[api_key] = inputs[key]
        layer = self._client("lambda").publish_layer_version(**publish)
        return layer["LayerVersionArn"], {
            "arn": layer["LayerVersionArn"],
            "layerArn": layer["LayerArn"],
            "version": str(layer["Version"]),
            "createdDate": layer["CreatedDate"],
            "sourceCodeSize": layer["Content"]["CodeSize"],
        }

    def _require_lambda_trust(self, role_arn: str) -> None:
        """CreateFunction fails unless the role's trust policy lets lambda.amazonaws.com assume it."""
        role_name = role_arn.rpartition("/")[2]
        document = self._client("iam").get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        for statement in document.get("Statement", []):
            principal = statement.get("Principal") or {}
            services = principal.get("Service", []) if isinstance(principal, Mapping) else []
            services = [services] if isinstance(services, str) else services
            actions = statement.get("Action")
            actions = [actions] if isinstance(actions, str) else actions or []
            trusts_lambda = "lambda.amazonaws.com" in services and "sts:AssumeRole" in actions
            if statement.get("Effect") == "Allow" and trusts_lambda:
                return
        raise DeployError(
            f"CreateFunction would fail: the role defined for the function ({role_arn}) cannot be assumed by Lambda"
        )

    def _function(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        function_name = inputs.get("name") or _autoname(name)
        role_arn = inputs["role"]
        self._require_lambda_trust(role_arn)
        code = zip_bytes(inputs["code"], self._project_dir)
        declared = (inputs.get("environment") or {}).get("variables") or {}
        variables = {key: str(value) for key, value in declared.items()}
        timeout = int(inputs.get("timeout") or 3)
        memory = int(inputs.get("memorySize") or 128)
        create: dict[str, Any] = {
            "FunctionName": function_name,
            "Role": role_arn,
            "Runtime": inputs["runtime"],
            "Handler": inputs["handler"],
            "Code": {"ZipFile": code},
            "Timeout": timeout,
            "MemorySize": memory,
            "Environment": {"Variables": variables},
            "Layers": list(inputs.get("layers") or []),
            "Architectures": list(inputs.get("architectures") or ["x86_64"]),
            "Tags": inputs["tagsAll"],
        }
        dead_letter_target = (inputs.get("deadLetterConfig") or {}).get("targetArn")
        if dead_letter_target:
            create["DeadLetterConfig"] = {"TargetArn": dead_letter_target}
        if inputs.get("description"):
            create["Description"] = inputs["description"]
        lambda_client = self._client("lambda")
        function = lambda_client.create_function(**create)
        reserved = inputs.get("reservedConcurrentExecutions")
        reserved = None if reserved is None or int(reserved) < 0 else int(reserved)
        if reserved == 0:
            raise DeployError(f"{name}: reserved concurrency 0 throttles every event; the emulator has no throttling")
        if reserved is not None:
            lambda_client.put_function_concurrency(FunctionName=function_name, ReservedConcurrentExecutions=reserved)
        arn = function["FunctionArn"]
        code_dir = extract(code, self._work_dir / "functions" / function_name / secrets.token_hex(4))
        self._lambda_service.add_function(
            FunctionSpec(
                name=function_name,
                arn=arn,
                role_arn=role_arn,
                handler=inputs["handler"],
                runtime=inputs["runtime"],
                timeout_s=timeout,
                memory_mb=memory,
                environment=variables,
                code_dir=code_dir,
                log_group=f"/aws/lambda/{function_name}",
                reserved_concurrency=reserved,
            )
        )
        if dead_letter_target:
            self._lambda_service.set_dead_letter_target(arn, dead_letter_target)
        region = self._emulator.region
        partition = self._emulator.partition
        invoke_arn = f"arn:{partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations"
        return function_name, {
            "name": function_name,
            "arn": arn,
            "qualifiedArn": f"{arn}:$LATEST",
            "invokeArn": invoke_arn,
            "qualifiedInvokeArn": invoke_arn.replace(arn, f"{arn}:$LATEST"),
            "version": "$LATEST",
            "lastModified": function["LastModified"],
            "sourceCodeHash": base64.b64encode(hashlib.sha256(code).digest()).decode(),
            "sourceCodeSize": len(code),
        }

    def _function_arn(self, function: str) -> str:
        if function.startswith("arn:"):
            return function
        return self._client("lambda").get_function(FunctionName=function)["Configuration"]["FunctionArn"]

    def _invoke_config(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        function_name = inputs["functionName"]
        destinations = _pascal(inputs.get("destinationConfig") or {})
        for kind, destination in destinations.items():
            target = destination.get("Destination", "")
            if target.split(":")[2:3] != ["sqs"]:
                raise DeployError(f"{name}: {kind} destination {target!r}: the emulator delivers only to SQS queues")
        request: dict[str, Any] = {"FunctionName": function_name, "DestinationConfig": destinations}
        if inputs.get("maximumRetryAttempts") is not None:
            request["MaximumRetryAttempts"] = int(inputs["maximumRetryAttempts"])
        if inputs.get("maximumEventAgeInSeconds") is not None:
            request["MaximumEventAgeInSeconds"] = int(inputs["maximumEventAgeInSeconds"])
        self._client("lambda").put_function_event_invoke_config(**request)
        defaults = AsyncConfig()
        config = AsyncConfig(
            maximum_retry_attempts=request.get("MaximumRetryAttempts", defaults.maximum_retry_attempts),
            maximum_event_age_s=request.get("MaximumEventAgeInSeconds", defaults.maximum_event_age_s),
            on_failure=(destinations.get("OnFailure") or {}).get("Destination"),
            on_success=(destinations.get("OnSuccess") or {}).get("Destination"),
        )
        self._lambda_service.set_async_config(self._function_arn(function_name), config)
        return function_name, {}

    def _permission(self, name: str, inputs: dict[str, Any], provider: dict[str, str]) -> ResourceResult:
        statement_id = inputs.get("statementId") or f"terraform-{secrets.token_hex(12)}"
        request: dict[str, Any] = {
            "FunctionName": inputs["function"],
            "StatementId": statement_id,
            "Action": inputs["action"],
            "Principal": inputs["principal"],
        }
        if inputs.get("sourceArn"):
            request["SourceArn"] = inputs["sourceArn"]
        if inputs.get("sourceAccount"):
            request["SourceAccount"] = inputs["sourceAccount"]
        self._client("lambda").add_permission(**request)
        return statement_id, {"statementId": statement_id}


def deploy(
    stack: str,
    emulator: Emulator,
    lambda_service: LambdaService,
    *,
    project_dir: Path = PROJECT_DIR,
    work_dir: Path | None = None,
    config_overrides: Mapping[str, Any] | None = None,
) -> ProgramRun:
    """Run the project's real program for `stack` into the running emulator; return what it declared.

    Unless `layerZip` is overridden, the layer is a tiny stand-in (the handler runs with the
    virtualenv's Pillow), so deploying needs no network and no layer build.
    """
    work = work_dir or emulator.state_dir / "deploy"
    overrides = {"layerZip": str(stand_in_layer_zip(work)), **(config_overrides or {})}
    mocks = EmulatorDeployer(emulator, lambda_service, project_dir=project_dir, work_dir=work)
    started = datetime.now(UTC)
    run = run_program(stack, mocks, project_dir=project_dir, config_overrides=overrides)
    log.info(
        "deployed stack %s: %d resources in %.1f s",
        stack,
        len([r for r in run.resources if r.custom]),
        (datetime.now(UTC) - started).total_seconds(),
    )
    return run


def stack_region(stack: str, project_dir: Path = PROJECT_DIR, config_overrides: Mapping[str, Any] | None = None) -> str:
    """The `aws:region` the stack deploys to, after the `config_overrides` `deploy` gets; the emulator serves it."""
    _, config = load_stack_config(stack, project_dir, config_overrides)
    region = config.get("aws:region")
    if not region:
        raise DeployError(f"stack {stack}: aws:region is not set; set it in Pulumi.{stack}.yaml")
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region):
        raise DeployError(f"stack {stack}: aws:region is {region!r}, not an AWS region like us-east-1")
    return region
