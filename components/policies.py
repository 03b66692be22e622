"""IAM and bucket policy documents as pure functions of ARNs, so tests read them without Pulumi."""

from __future__ import annotations

from typing import Any

PolicyDocument = dict[str, Any]

POLICY_VERSION = "2012-10-17"


def lambda_assume_role_policy() -> PolicyDocument:
    """Trust policy: only the Lambda service may assume the function's role."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "LambdaServiceOnly",
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def least_privilege_policy(
    *,
    upload_bucket_arn: str,
    processed_bucket_arn: str,
    quarantine_bucket_arn: str,
    log_group_arn: str,
    dead_letter_queue_arn: str,
    kms_key_arn: str | None,
    region: str,
    dns_suffix: str,
) -> PolicyDocument:
    """Exactly what the function does: read uploads, write variants and quarantined files, log, dead-letter.

    No ListBucket (a missing key then reads as 403 AccessDenied, which the handler lets Lambda
    retry and dead-letter instead of guessing it was deleted), no DeleteObject, no ACL actions
    (ACLs are disabled by BucketOwnerEnforced). Quarantining an upload too large to download is a
    server-side copy: GetObject(Version) on the upload and PutObject on the quarantine bucket.
    `region` is the provider's (`aws:region`) and `dns_suffix` its partition's (`amazonaws.com`,
    `amazonaws.com.cn` in China): with a KMS key, only S3's endpoint there may use it for the role.
    """
    statements: list[PolicyDocument] = [
        {
            "Sid": "ReadUploads",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": f"{upload_bucket_arn}/*",
        },
        {
            "Sid": "WriteVariantsAndQuarantine",
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": [f"{processed_bucket_arn}/*", f"{quarantine_bucket_arn}/*"],
        },
        {
            # CloudWatch names a log stream `<log-group-arn>:log-stream:<stream>`, so `:*` after this
            # one group's ARN grants its streams only: it is the documented scoping, not a wildcard
            # over resources. CreateLogGroup is absent: the program creates the group.
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": f"{log_group_arn}:*",
        },
        {
            "Sid": "DeadLetterFailedEvents",
            "Effect": "Allow",
            "Action": ["sqs:SendMessage"],
            "Resource": dead_letter_queue_arn,
        },
    ]
    if kms_key_arn is not None:
        statements.append(
            {
                # SSE-KMS: reading an upload decrypts, writing a variant generates a data key, and a
                # multipart copy into quarantine decrypts its parts. Only S3 may make these calls for
                # the role, and only for this stack's buckets: every bucket has an S3 Bucket Key, so
                # S3 passes the bucket ARN as encryption context, not the object ARN. (An object
                # written with the bucket key explicitly disabled would carry its object ARN; the
                # function then cannot read it and the event ends in the alarmed dead-letter queue.)
                "Sid": "UseBucketKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                "Resource": kms_key_arn,
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"s3.{region}.{dns_suffix}",
                        "kms:EncryptionContext:aws:s3:arn": [
                            upload_bucket_arn,
                            processed_bucket_arn,
                            quarantine_bucket_arn,
                        ],
                    }
                },
            }
        )
    return {"Version": POLICY_VERSION, "Statement": statements}


def tls_only_bucket_policy(bucket_arn: str) -> PolicyDocument:
    """Deny every request to the bucket and its objects that does not use TLS."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
