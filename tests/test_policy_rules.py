"""The policy pack's rules, run without the CLI over what the real program declares.

Each stack is run once under the shared echo mocks; every rule must pass on dev and prod as
declared. Each breakage then edits the dev run's own registrations (drop a resource, change an
input) so the tests follow the program as it evolves, and asserts the rule's verdict and that its
message and URN name the offending resource.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from local.program import ProgramRun, Registration
from policy.harness import PackResult, Violation, evaluate
from policy.rules import POLICIES, is_wildcard_action, is_wildcard_resource, wildcard_problems
from tests.pulumi_mocks import run_stack

BUCKET = "aws:s3/bucket:Bucket"
FUNCTION = "aws:lambda/function:Function"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
PERMISSION = "aws:lambda/permission:Permission"
NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
INVOKE_CONFIG = "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LAYER = "aws:lambda/layerVersion:LayerVersion"
MANAGED_POLICY = "aws:iam/policy:Policy"
METRIC_ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TAGGED = {BUCKET, FUNCTION, ROLE, LOG_GROUP, "aws:sqs/queue:Queue", METRIC_ALARM}
"""The types the program declares that take tags (the pack's `TAGGABLE_TYPES` the program uses)."""
ROLE_ATTACHMENTS = [
    pytest.param("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "role", "policyArn", id="RolePolicyAttachment"),
    pytest.param("aws:iam/policyAttachment:PolicyAttachment", "roles", "policyArn", id="PolicyAttachment"),
    pytest.param(
        "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive",
        "roleName",
        "policyArns",
        id="RolePolicyAttachmentsExclusive",
    ),
]
"""Every way to attach a managed policy to a role: (type, property naming the role(s), property with the ARN(s))."""


@pytest.fixture(scope="module")
def dev() -> ProgramRun:
    return run_stack("dev")


@pytest.fixture(scope="module")
def prod() -> ProgramRun:
    return run_stack("prod")


# --- helpers: break one thing in a copy of the dev run -------------------------------------------


def resources_of(run: ProgramRun) -> list[Registration]:
    """A deep copy, so a test's edits never leak into the shared run."""
    return copy.deepcopy(run.resources)


def named(resources: list[Registration], type_token: str, suffix: str = "") -> Registration:
    found = [r for r in resources if r.type == type_token and r.name.endswith(suffix)]
    assert len(found) == 1, f"expected one {type_token} named *{suffix}, found {[r.name for r in found]}"
    return found[0]


def edit(registration: Registration, change: Callable[[dict[str, Any]], None]) -> None:
    """Apply `change` to what both resource rules (inputs) and stack rules (outputs) see."""
    change(registration.inputs)
    change(registration.state)


def set_props(registration: Registration, **values: Any) -> None:
    """Set plain values: as the engine would, they no longer depend on the resources they came from."""
    edit(registration, lambda props: props.update(values))
    for key in values:
        registration.property_dependencies.pop(key, None)


def drop_prop(registration: Registration, key: str) -> None:
    edit(registration, lambda props: props.pop(key, None))
    registration.property_dependencies.pop(key, None)


def without(resources: list[Registration], registration: Registration) -> list[Registration]:
    return [r for r in resources if r.urn != registration.urn]


def added(resources: list[Registration], template: Registration, type_token: str, name: str, **inputs: Any):
    """A new resource declared like `template` (same parent, provider), e.g. an ACL on a bucket."""
    clone = copy.deepcopy(template)
    clone.type, clone.name = type_token, name
    clone.urn = template.urn.rsplit("::", 1)[0].rsplit("$", 1)[0] + f"${type_token}::{name}"
    clone.inputs, clone.state, clone.id = dict(inputs), dict(inputs), f"{name}_id"
    return [*resources, clone]


def only(result: PackResult, policy: str) -> list[Violation]:
    """The violations of `policy`, after checking no other rule fired (each breakage is targeted)."""
    others = [v for v in result.violations if v.policy != policy]
    assert not others, f"unexpected violations besides {policy}:\n{PackResult(others).summary()}"
    return result.of(policy)


def assert_fires(result: PackResult, policy: str, registration: Registration, *fragments: str) -> Violation:
    violations = only(result, policy)
    assert len(violations) == 1, result.summary()
    violation = violations[0]
    assert violation.urn == registration.urn
    assert repr(registration.name) in violation.message
    for fragment in fragments:
        assert fragment in violation.message, violation.message
    return violation


def attached(
    resources: list[Registration], type_token: str, role_prop: str, arn_prop: str, policy_arn: str
) -> list[Registration]:
    """The function's role gets `policy_arn` through a `type_token` attachment (`roles`, `policyArns` are lists)."""
    role = named(resources, ROLE, "function-role")
    inputs = {
        role_prop: [role.state["name"]] if role_prop == "roles" else role.state["name"],
        arn_prop: [policy_arn] if arn_prop == "policyArns" else policy_arn,
    }
    return added(resources, role, type_token, "pipeline-attachment", **inputs)


def with_managed_policy(resources: list[Registration], *statements: dict[str, Any]) -> list[Registration]:
    """A customer-managed policy declared in the stack (attach it with `attached`)."""
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    resources = added(
        resources,
        named(resources, ROLE, "function-role"),
        MANAGED_POLICY,
        "pipeline-extra",
        policy=json.dumps(document),
    )
    resources[-1].state["arn"] = "arn:aws:iam::123456789012:policy/pipeline-extra"
    return resources


def rewrite_policy(registration: Registration, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit a JSON policy document input (RolePolicy / BucketPolicy `policy`)."""
    document = json.loads(registration.inputs["policy"])
    change(document)
    set_props(registration, policy=json.dumps(document))


# --- the real program passes -------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_rule_passes_on_what_the_program_declares(stack: str, request: pytest.FixtureRequest) -> None:
    run: ProgramRun = request.getfixturevalue(stack)
    result = evaluate(run.resources)
    assert result.violations == [], result.summary()
    assert result.unresolved == []
    assert result.not_applicable == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
        {"architecture": "x86_64", "runtime": "python3.13"},
        {"uploadPrefix": "incoming/", "uploadSuffix": ".jpg"},
        {"alarmTopicArn": "arn:aws:sns:us-east-1:123456789012:ops-alerts"},
    ],
    ids=["sse-kms", "x86_64-python3.13", "filtered-trigger", "alarm-topic"],
)
def test_every_rule_passes_on_the_program_s_config_variants(overrides: dict[str, str]) -> None:
    """Every setting a user may choose keeps the stack compliant (encryption, layer, trigger filters)."""
    result = evaluate(run_stack("dev", **overrides).resources)
    assert result.violations == [], result.summary()


def test_the_program_declares_what_the_rules_inspect(dev: ProgramRun) -> None:
    """Guards the passing test above: an empty stack would pass every rule too."""
    types = {r.type for r in dev.resources}
    assert len(dev.of_type(BUCKET)) == 3
    assert {FUNCTION, ROLE, ROLE_POLICY, LOG_GROUP, PERMISSION, NOTIFICATION, INVOKE_CONFIG, BUCKET_POLICY} <= types
    assert len(dev.of_type(METRIC_ALARM)) == 2


# --- S3 buckets --------------------------------------------------------------------------------------


def test_bucket_without_public_access_block(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    block = named(resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "upload-public-access-block")
    result = evaluate(without(resources, block))
    assert_fires(
        result, "s3-bucket-public-access-block", named(resources, BUCKET, "upload"), "no BucketPublicAccessBlock"
    )


def test_public_access_block_with_a_flag_off(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    block = named(resources, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "processed-public-access-block")
    set_props(block, restrictPublicBuckets=False)
    result = evaluate(resources)
    assert_fires(
        result, "s3-bucket-public-access-block", named(resources, BUCKET, "processed"), "restrictPublicBuckets"
    )


def test_bucket_without_encryption(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    encryption = named(
        resources,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "quarantine-encryption",
    )
    result = evaluate(without(resources, encryption))
    assert_fires(result, "s3-bucket-encryption", named(resources, BUCKET, "quarantine"), "no default encryption")


def test_inline_encryption_on_the_bucket_counts(dev: ProgramRun) -> None:
    """A bucket whose outputs show default encryption (as AWS reports it) needs no separate resource."""
    resources = resources_of(dev)
    encryption = named(
        resources,
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "upload-encryption",
    )
    set_props(
        named(resources, BUCKET, "upload"),
        serverSideEncryptionConfiguration={"rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}},
    )
    assert evaluate(without(resources, encryption)).violations == []


def test_versioning_suspended(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    versioning = named(resources, "aws:s3/bucketVersioning:BucketVersioning", "upload-versioning")
    set_props(versioning, versioningConfiguration={"status": "Suspended"})
    result = evaluate(resources)
    assert_fires(result, "s3-bucket-versioning", named(resources, BUCKET, "upload"), "'Suspended'")


def test_versioning_missing_but_enabled_inline(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    versioning = named(resources, "aws:s3/bucketVersioning:BucketVersioning", "upload-versioning")
    resources = without(resources, versioning)
    result = evaluate(resources)
    assert_fires(result, "s3-bucket-versioning", named(resources, BUCKET, "upload"), "no BucketVersioning")

    set_props(named(resources, BUCKET, "upload"), versioning={"enabled": True})
    assert evaluate(resources).violations == []


def test_ownership_that_keeps_acls(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    ownership = named(resources, "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "processed-ownership")
    set_props(ownership, rule={"objectOwnership": "ObjectWriter"})
    result = evaluate(resources)
    assert_fires(result, "s3-bucket-ownership-enforced", named(resources, BUCKET, "processed"), "'ObjectWriter'")


def test_bucket_policy_without_tls_deny(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    policy = named(resources, BUCKET_POLICY, "upload-tls-only")
    rewrite_policy(policy, lambda doc: doc.update(Statement=[s for s in doc["Statement"] if s["Effect"] != "Deny"]))
    result = evaluate(resources)
    assert_fires(result, "s3-bucket-tls-only", named(resources, BUCKET, "upload"), "does not deny requests without TLS")


def test_tls_deny_written_with_other_valid_iam_spellings_passes(dev: ProgramRun) -> None:
    """IAM condition keys are case-insensitive and values may be lists: both still deny plain HTTP."""
    resources = resources_of(dev)
    policy = named(resources, BUCKET_POLICY, "upload-tls-only")

    def respell(document: dict[str, Any]) -> None:
        [statement] = document["Statement"]
        statement["Condition"] = {"Bool": {"aws:securetransport": ["false"]}}

    rewrite_policy(policy, respell)
    assert evaluate(resources).violations == []


def test_tls_condition_that_allows_plain_http_still_fires(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    policy = named(resources, BUCKET_POLICY, "upload-tls-only")

    def deny_tls_instead(document: dict[str, Any]) -> None:
        [statement] = document["Statement"]
        statement["Condition"] = {"Bool": {"AWS:SecureTransport": ["true"]}}

    rewrite_policy(policy, deny_tls_instead)
    assert_fires(
        evaluate(resources), "s3-bucket-tls-only", named(resources, BUCKET, "upload"), "does not deny requests"
    )


@pytest.mark.parametrize(
    ("denied", "covered"),
    [
        (["{arn}", "{arn}/*"], True),
        (["*"], True),
        (["{arn}*"], True),
        (["arn:aws:s3:::some-other-bucket/*"], False),
        (["arn:aws:s3:::some-other-bucket", "arn:aws:s3:::some-other-bucket/*"], False),
        (["{arn}/*"], False),
        (["{arn}"], False),
        (["{arn}", "{arn}/photos/*"], False),
    ],
    ids=[
        "own-arn-and-objects",
        "everything",
        "prefix",
        "other-objects",
        "other-bucket",
        "objects-only",
        "bucket-only",
        "some-objects",
    ],
)
def test_tls_deny_must_cover_the_bucket_it_is_attached_to(dev: ProgramRun, denied: list[str], covered: bool) -> None:
    resources = resources_of(dev)
    bucket = named(resources, BUCKET, "upload")

    def deny_on(document: dict[str, Any]) -> None:
        [statement] = document["Statement"]
        statement["Resource"] = [resource.format(arn=bucket.state["arn"]) for resource in denied]

    rewrite_policy(named(resources, BUCKET_POLICY, "upload-tls-only"), deny_on)
    result = evaluate(resources)
    if covered:
        assert result.violations == []
    else:
        assert_fires(result, "s3-bucket-tls-only", bucket, "do not cover", f"{bucket.state['arn']}/*")


def test_bucket_without_any_policy(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    policy = named(resources, BUCKET_POLICY, "quarantine-tls-only")
    result = evaluate(without(resources, policy))
    assert_fires(result, "s3-bucket-tls-only", named(resources, BUCKET, "quarantine"), "no BucketPolicy")


def test_bucket_policy_open_to_everyone(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    policy = named(resources, BUCKET_POLICY, "processed-tls-only")
    arn = named(resources, BUCKET, "processed").state["arn"]
    public_read = {
        "Sid": "PublicRead",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"{arn}/*",
    }
    rewrite_policy(policy, lambda doc: doc["Statement"].append(public_read))
    result = evaluate(resources)
    assert_fires(result, "s3-no-public-grants", policy, "PublicRead", "Principal '*'")


def test_public_principal_pinned_by_a_condition_is_not_public(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    policy = named(resources, BUCKET_POLICY, "processed-tls-only")
    arn = named(resources, BUCKET, "processed").state["arn"]
    from_distribution = {
        "Sid": "CloudFrontOnly",
        "Effect": "Allow",
        "Principal": {"AWS": "*"},
        "Action": "s3:GetObject",
        "Resource": f"{arn}/*",
        "Condition": {"StringEquals": {"AWS:SourceArn": "arn:aws:cloudfront::123456789012:distribution/EXAMPLE"}},
    }
    rewrite_policy(policy, lambda doc: doc["Statement"].append(from_distribution))
    assert evaluate(resources).violations == []


@pytest.mark.parametrize(
    "condition",
    [
        {"StringLike": {"aws:SourceArn": "arn:aws:cloudfront::123456789012:distribution/*"}},
        {"StringEquals": {"aws:SourceAccount": "*"}},
        {"StringEquals": {"aws:PrincipalArn": "${aws:username}"}},
        {"StringNotEquals": {"aws:SourceAccount": "123456789012"}},
        {"StringEqualsIfExists": {"aws:SourceAccount": "123456789012"}},
        {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "0.0.0.0/0"]}},
        {"Null": {"aws:SourceVpce": "false"}},
        {"ForAllValues:StringEquals": {"aws:SourceVpce": "vpce-1a2b3c4d"}},
    ],
    ids=[
        "wildcard-arn",
        "any-account",
        "policy-variable",
        "negated",
        "if-exists",
        "every-address",
        "null-check",
        "for-all-values",
    ],
)
def test_public_principal_with_a_condition_that_pins_nothing_is_public(
    dev: ProgramRun, condition: dict[str, Any]
) -> None:
    resources = resources_of(dev)
    policy = named(resources, BUCKET_POLICY, "processed-tls-only")
    arn = named(resources, BUCKET, "processed").state["arn"]
    loose = {
        "Sid": "Loose",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"{arn}/*",
        "Condition": condition,
    }
    rewrite_policy(policy, lambda doc: doc["Statement"].append(loose))
    assert_fires(evaluate(resources), "s3-no-public-grants", policy, "Loose")


def test_public_canned_acl(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    bucket = named(resources, BUCKET, "upload")
    resources = added(
        resources,
        named(resources, BUCKET_POLICY, "upload-tls-only"),
        "aws:s3/bucketAclV2:BucketAclV2",
        "pipeline-upload-acl",
        bucket=bucket.id,
        acl="public-read",
    )
    acl = resources[-1]
    assert_fires(evaluate(resources), "s3-no-public-grants", acl, "'public-read'")


def test_inline_grant_to_all_users(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    bucket = named(resources, BUCKET, "upload")
    all_users = "http://acs.amazonaws.com/groups/global/AllUsers"
    set_props(bucket, grants=[{"type": "Group", "uri": all_users, "permissions": ["READ"]}])
    assert_fires(evaluate(resources), "s3-no-public-grants", bucket, all_users)


# --- IAM -----------------------------------------------------------------------------------------


def test_wildcard_action_and_resource_in_the_role_policy(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    role_policy = named(resources, ROLE_POLICY, "function-policy")
    any_queue = {"Sid": "AnyQueue", "Effect": "Allow", "Action": "sqs:*", "Resource": "*"}
    rewrite_policy(role_policy, lambda doc: doc["Statement"].append(any_queue))
    violations = only(evaluate(resources), "iam-no-wildcards")
    assert {v.urn for v in violations} == {role_policy.urn}
    messages = " | ".join(v.message for v in violations)
    assert repr(role_policy.name) in messages
    assert "statement AnyQueue allows action 'sqs:*'" in messages
    assert "statement AnyQueue allows resource '*'" in messages


def test_wildcard_in_a_role_inline_policy(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    role = named(resources, ROLE, "function-role")
    admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    set_props(role, inlinePolicies=[{"name": "admin", "policy": json.dumps(admin)}])
    result = evaluate(resources)
    violations = result.of("iam-no-wildcards")
    assert {v.urn for v in violations} == {role.urn}
    assert any("inline policy 'admin'" in v.message and "action '*'" in v.message for v in violations)
    # Admin rights include writing into the upload bucket, so the recursion rule sees it as well.
    assert {v.policy for v in result.violations} == {"iam-no-wildcards", "s3-notification-no-recursion"}


@pytest.mark.parametrize(("type_token", "role_prop", "arn_prop"), ROLE_ATTACHMENTS)
def test_attached_aws_managed_policy(dev: ProgramRun, type_token: str, role_prop: str, arn_prop: str) -> None:
    full_access = "arn:aws:iam::aws:policy/AmazonS3FullAccess"
    resources = attached(resources_of(dev), type_token, role_prop, arn_prop, full_access)
    assert_fires(evaluate(resources), "iam-no-wildcards", resources[-1], "AmazonS3FullAccess")


@pytest.mark.parametrize(("type_token", "role_prop", "arn_prop"), ROLE_ATTACHMENTS)
def test_attached_managed_policy_declared_here_is_read(
    dev: ProgramRun, type_token: str, role_prop: str, arn_prop: str
) -> None:
    resources = resources_of(dev)
    queue_arn = named(resources, "aws:sqs/queue:Queue", "dead-letter").state["arn"]
    resources = with_managed_policy(
        resources, {"Sid": "AnyQueueAction", "Effect": "Allow", "Action": "sqs:*", "Resource": queue_arn}
    )
    resources = attached(resources, type_token, role_prop, arn_prop, resources[-1].state["arn"])
    assert_fires(
        evaluate(resources), "iam-no-wildcards", resources[-1], "managed policy 'pipeline-extra'", "action 'sqs:*'"
    )


@pytest.mark.parametrize(
    ("kept", "fires"),
    [(["pipeline-function-policy"], False), (["pipeline-function-policy", "legacy-admin"], True)],
    ids=["declared", "undeclared"],
)
def test_role_policies_exclusive_keeps_only_inline_policies_declared_here(
    dev: ProgramRun, kept: list[str], fires: bool
) -> None:
    resources = resources_of(dev)
    set_props(named(resources, ROLE_POLICY, "function-policy"), name="pipeline-function-policy")
    role = named(resources, ROLE, "function-role")
    exclusive = "aws:iam/rolePoliciesExclusive:RolePoliciesExclusive"
    resources = added(resources, role, exclusive, "pipeline-inline-only", roleName=role.state["name"], policyNames=kept)
    result = evaluate(resources)
    if fires:
        assert_fires(result, "iam-no-wildcards", resources[-1], "'legacy-admin'", "doesn't declare")
    else:
        assert result.violations == []


def test_policy_from_outside_the_stack_needs_review(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    role = named(resources, ROLE, "function-role")
    external = "arn:aws:iam::123456789012:policy/team-shared"
    set_props(role, managedPolicyArns=[external])
    assert_fires(evaluate(resources), "iam-no-wildcards", role, "outside this stack", external)

    reviewed = {"iam-no-wildcards": {"allowedManagedPolicyArns": [external]}}
    assert evaluate(resources, reviewed).violations == []


def test_arn_with_a_wildcard_resource_part(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    role_policy = named(resources, ROLE_POLICY, "function-policy")
    any_bucket = {"Sid": "AnyBucket", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*"}
    rewrite_policy(role_policy, lambda doc: doc["Statement"].append(any_bucket))
    assert_fires(evaluate(resources), "iam-no-wildcards", role_policy, "resource 'arn:aws:s3:::*'")


@pytest.mark.parametrize(
    ("resource", "wildcard"),
    [
        ("*", True),
        ("arn:aws:s3:::*", True),
        ("arn:aws:s3:::*/*", True),
        ("arn:aws:s3:::photos-*/*", True),
        ("arn:aws:s3:::photos-upload-1a2b", False),
        ("arn:aws:s3:::photos-upload-1a2b/*", False),
        ("arn:aws:s3:::photos-upload-1a2b/incoming/*.jpg", False),
        ("arn:aws:logs:us-east-1:123456789012:*", True),
        ("arn:aws:logs:us-east-1:123456789012:log-group:*", True),
        ("arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/*", True),
        ("arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/resize:*", False),
        ("arn:aws:logs:*:123456789012:log-group:/aws/lambda/resize:*", True),
        ("arn:aws:sqs:us-east-1:*:dead-letters", True),
        ("arn:aws:sqs:us-east-1:123456789012:dead-*", True),
        ("arn:aws:sqs:us-east-1:123456789012:dead-letters", False),
        ("arn:aws:dynamodb:us-east-1:123456789012:table/*", True),
        ("arn:aws:dynamodb:us-east-1:123456789012:table/Photos/index/*", False),
        ("arn:aws:kms:us-east-1:123456789012:alias/*", True),
        ("arn:aws:lambda:us-east-1:123456789012:function:resize:*", False),
        ("arn:aws:lambda:us-east-1:123456789012:function:res?ze", True),
        ("arn:aws:iam::123456789012:role/*", True),
        ("arn:aws:iam::123456789012:role/service-role/*", True),
        ("arn:aws:iam::123456789012:role/*/resize", True),
        ("arn:aws:iam::123456789012:role/service-role/resize-role", False),
        ("arn:aws:iam::123456789012:role/resize-role", False),
        ("arn:*", True),
        ("arn:aws:s3:*", True),
        ("arn:aws:logs:us-east-1:*", True),
        ("arn:aws:sqs:us-east-1:123456789012*", True),
        ("arn:*:s3:::photos-upload-1a2b/*", True),
        ("arn:aws:*:us-east-1:123456789012:function:resize", True),
        ("arn:aws:s3:us-east-1:123456789012:accesspoint/*", True),
        ("arn:aws:s3:us-east-1:123456789012:accesspoint/uploads/object/*", False),
        ("arn:aws:s3", False),
    ],
)
def test_a_wildcard_resource_reaches_more_than_one_named_resource(resource: str, wildcard: bool) -> None:
    assert is_wildcard_resource(resource) is wildcard


def test_partial_wildcard_over_log_groups_fires(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    role_policy = named(resources, ROLE_POLICY, "function-policy")
    any_group = "arn:aws:logs:us-east-1:123456789012:log-group:*"
    logs = {"Sid": "AnyGroup", "Effect": "Allow", "Action": "logs:PutLogEvents", "Resource": any_group}
    rewrite_policy(role_policy, lambda doc: doc["Statement"].append(logs))
    assert_fires(evaluate(resources), "iam-no-wildcards", role_policy, f"resource {any_group!r}")


@pytest.mark.parametrize(
    ("action", "wildcard"),
    [
        ("*", True),
        ("s3:*", True),
        ("s3:Put*", True),
        ("iam:Pass*", True),
        ("s3:*Object", True),
        ("s3:GetObjec?", True),
        ("s3:GetObject", False),
        ("sqs:SendMessage", False),
    ],
)
def test_a_wildcard_action_matches_more_than_one_action(action: str, wildcard: bool) -> None:
    assert is_wildcard_action(action) is wildcard


@pytest.mark.parametrize(
    ("statement", "problem"),
    [
        ({"Action": "s3:Put*", "Resource": "arn:aws:s3:::photos/*"}, "action 's3:Put*'"),
        ({"Action": "s3:GetObject", "Resource": "arn:*"}, "resource 'arn:*'"),
        ({"NotAction": "iam:*", "Resource": "arn:aws:s3:::photos/*"}, "NotAction"),
        ({"Action": "s3:GetObject", "NotResource": "arn:aws:s3:::photos/*"}, "NotResource"),
    ],
    ids=["partial-action", "short-arn", "not-action", "not-resource"],
)
def test_allow_statement_wildcards(statement: dict[str, Any], problem: str) -> None:
    problems = wildcard_problems({"Statement": [{"Effect": "Allow", **statement}]}, [])
    assert any(problem in p for p in problems), problems
    assert wildcard_problems({"Statement": [{"Effect": "Deny", **statement}]}, []) == []


def test_partial_action_wildcard_in_the_role_policy(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    role_policy = named(resources, ROLE_POLICY, "function-policy")
    processed_arn = named(resources, BUCKET, "processed").state["arn"]
    put_any = {"Sid": "PutAnything", "Effect": "Allow", "Action": "s3:Put*", "Resource": f"{processed_arn}/*"}
    rewrite_policy(role_policy, lambda doc: doc["Statement"].append(put_any))
    assert_fires(evaluate(resources), "iam-no-wildcards", role_policy, "statement PutAnything allows action 's3:Put*'")


def test_star_resource_for_actions_that_only_support_it_is_allowed(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    tracing = {"Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], "Resource": "*"}
    rewrite_policy(named(resources, ROLE_POLICY, "function-policy"), lambda doc: doc["Statement"].append(tracing))
    assert evaluate(resources).violations == []


# --- Lambda --------------------------------------------------------------------------------------


def test_log_group_without_retention(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    drop_prop(named(resources, LOG_GROUP, "logs"), "retentionInDays")
    result = evaluate(resources)
    assert_fires(result, "lambda-log-retention", named(resources, FUNCTION, "function"), "no retentionInDays")


def test_function_without_its_log_group(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    result = evaluate(without(resources, named(resources, LOG_GROUP, "logs")))
    assert_fires(result, "lambda-log-retention", function, f"/aws/lambda/{function.state['name']}")


def test_custom_log_group_from_logging_config(dev: ProgramRun) -> None:
    """`loggingConfig.logGroup` moves the function's logs: the default-named group no longer counts."""
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    set_props(function, loggingConfig={"logFormat": "JSON", "logGroup": "/shared/image-pipeline"})
    assert_fires(evaluate(resources), "lambda-log-retention", function, "'/shared/image-pipeline'")

    set_props(named(resources, LOG_GROUP, "logs"), name="/shared/image-pipeline")
    assert evaluate(resources).violations == []


def test_function_without_failure_destination(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    resources = without(resources, named(resources, INVOKE_CONFIG, "async-invoke"))
    function = named(resources, FUNCTION, "function")
    assert_fires(evaluate(resources), "lambda-failure-destination", function, "no on-failure destination")

    set_props(function, deadLetterConfig={"targetArn": "arn:aws:sns:us-east-1:123456789012:dead-letters"})
    assert evaluate(resources).violations == []


def test_dead_letter_queue_without_an_alarm(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    queue_name = named(resources, "aws:sqs/queue:Queue", "dead-letter").state["name"]
    alarm = named(resources, METRIC_ALARM, "dead-letter-alarm")
    function = named(resources, FUNCTION, "function")

    set_props(alarm, dimensions={"QueueName": "some-other-queue"})
    assert_fires(evaluate(resources), "lambda-failure-alarm", function, repr(queue_name))

    set_props(alarm, dimensions={"QueueName": queue_name}, metricName="NumberOfMessagesSent")
    assert_fires(evaluate(resources), "lambda-failure-alarm", function, "ApproximateNumberOfMessagesVisible")

    without_alarm = without(resources, alarm)
    assert_fires(evaluate(without_alarm), "lambda-failure-alarm", function, "pile up")

    set_props(alarm, metricName="ApproximateNumberOfMessagesVisible")
    assert evaluate(resources).violations == []


def test_a_destination_that_delivers_onwards_needs_no_alarm(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    resources = without(resources, named(resources, METRIC_ALARM, "dead-letter-alarm"))
    config = named(resources, INVOKE_CONFIG, "async-invoke")
    topic = "arn:aws:sns:us-east-1:123456789012:failures"
    set_props(config, destinationConfig={"onFailure": {"destination": topic}})
    assert evaluate(resources).violations == []


@pytest.mark.parametrize(("timeout", "fires"), [(900, False), (901, True)])
def test_timeout_limit(dev: ProgramRun, timeout: int, fires: bool) -> None:
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    set_props(function, timeout=timeout)
    result = evaluate(resources)
    if fires:
        assert_fires(result, "lambda-timeout", function, "timeout 901 s")
    else:
        assert result.violations == []


def test_deprecated_runtime(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    set_props(function, runtime="python3.9")
    set_props(named(resources, LAYER, "pillow-layer"), compatibleRuntimes=["python3.9"])
    assert_fires(evaluate(resources), "lambda-runtime-architecture", function, "runtime 'python3.9'")


def test_unsupported_architecture(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    set_props(function, architectures=["riscv64"])
    set_props(named(resources, LAYER, "pillow-layer"), compatibleArchitectures=["riscv64"])
    assert_fires(evaluate(resources), "lambda-runtime-architecture", function, "architecture 'riscv64'")


def test_layer_built_for_another_architecture(dev: ProgramRun) -> None:
    """Both supported, but an arm64 Pillow wheel can't load on x86_64."""
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    set_props(function, architectures=["x86_64"])
    assert_fires(evaluate(resources), "lambda-layer-compatibility", function, "'pipeline-pillow-layer'", "not 'x86_64'")


def test_layer_built_for_another_runtime(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    set_props(function, runtime="python3.13")
    assert_fires(evaluate(resources), "lambda-layer-compatibility", function, "['python3.12'], not 'python3.13'")


def test_permission_without_source_arn(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    permission = named(resources, PERMISSION, "allow-s3")
    drop_prop(permission, "sourceArn")
    assert_fires(evaluate(resources), "lambda-permission-source", permission, "without sourceArn")


def test_s3_permission_without_source_account(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    permission = named(resources, PERMISSION, "allow-s3")
    drop_prop(permission, "sourceAccount")
    assert_fires(evaluate(resources), "lambda-permission-source", permission, "without sourceAccount")


@pytest.mark.parametrize(
    ("principal", "pinned_by", "fragment"),
    [
        ("*", {}, "principal '*'"),
        ("*", {"principalOrgId": "o-a1b2c3d4e5"}, "principal '*'"),
        ("123456789012", {}, "lets '123456789012' invoke"),
        ("arn:aws:iam::999999999999:root", {}, "lets 'arn:aws:iam::999999999999:root' invoke"),
        ("123456789012", {"principalOrgId": "o-a1b2c3d4e5"}, None),
        ("arn:aws:iam::999999999999:root", {"sourceArn": "arn:aws:sns:us-east-1:999999999999:uploads"}, None),
    ],
    ids=["everyone", "everyone-in-org", "account-id", "account-arn", "account-in-org", "account-from-source"],
)
def test_permission_for_a_principal_that_is_not_a_service(
    dev: ProgramRun, principal: str, pinned_by: dict[str, str], fragment: str | None
) -> None:
    """The pack can't know the deploying account: an account principal needs a source or an organization."""
    resources = resources_of(dev)
    permission = named(resources, PERMISSION, "allow-s3")
    drop_prop(permission, "sourceArn")
    drop_prop(permission, "sourceAccount")
    set_props(permission, principal=principal, **pinned_by)
    result = evaluate(resources)
    if fragment:
        assert_fires(result, "lambda-permission-source", permission, fragment)
    else:
        assert result.violations == []


@pytest.mark.parametrize(("authorization", "fires"), [("NONE", True), ("AWS_IAM", False)])
def test_function_url_without_authorization(dev: ProgramRun, authorization: str, fires: bool) -> None:
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    resources = added(
        resources,
        function,
        "aws:lambda/functionUrl:FunctionUrl",
        "pipeline-url",
        functionName=function.state["name"],
        authorizationType=authorization,
    )
    result = evaluate(resources)
    if fires:
        assert_fires(result, "lambda-permission-source", resources[-1], "authorizationType NONE")
    else:
        assert result.violations == []


# --- recursion -----------------------------------------------------------------------------------


def test_function_allowed_to_write_into_the_bucket_that_triggers_it(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    upload_arn = named(resources, BUCKET, "upload").state["arn"]
    write_back = {"Sid": "WriteBack", "Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{upload_arn}/*"}
    rewrite_policy(named(resources, ROLE_POLICY, "function-policy"), lambda doc: doc["Statement"].append(write_back))
    notification = named(resources, NOTIFICATION, "upload-notification")
    violation = assert_fires(
        evaluate(resources), "s3-notification-no-recursion", notification, "s3:PutObject", "pipeline-upload"
    )
    assert "'pipeline-function'" in violation.message


def test_notification_on_the_bucket_the_function_writes_to(dev: ProgramRun) -> None:
    """Pointing the trigger at the processed bucket: every variant written would trigger again."""
    resources = resources_of(dev)
    processed = named(resources, BUCKET, "processed")
    notification = named(resources, NOTIFICATION, "upload-notification")
    set_props(notification, bucket=processed.state["bucket"])
    violation = assert_fires(evaluate(resources), "s3-notification-no-recursion", notification, "'pipeline-processed'")
    assert "every output would re-trigger it" in violation.message


def test_function_told_to_write_into_its_trigger_bucket(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    function = named(resources, FUNCTION, "function")
    upload_name = named(resources, BUCKET, "upload").state["bucket"]
    edit(function, lambda props: props["environment"]["variables"].update(PROCESSED_BUCKET=upload_name))
    notification = named(resources, NOTIFICATION, "upload-notification")
    assert_fires(evaluate(resources), "s3-notification-no-recursion", notification, "PROCESSED_BUCKET")


TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:uploads"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:uploads"


@pytest.mark.parametrize(
    ("route", "fragment"),
    [
        ({"topics": [{"topicArn": TOPIC_ARN, "events": ["s3:ObjectCreated:*"]}]}, f"SNS topic {TOPIC_ARN}"),
        ({"queues": [{"queueArn": QUEUE_ARN, "events": ["s3:ObjectCreated:Put"]}]}, f"SQS queue {QUEUE_ARN}"),
        ({"eventbridge": True}, "EventBridge"),
        ({"topics": [{"topicArn": TOPIC_ARN, "events": ["s3:ObjectRemoved:*"]}]}, None),
    ],
    ids=["sns", "sqs", "eventbridge", "sns-removals-only"],
)
@pytest.mark.parametrize("writes_back", [True, False], ids=["writes-back", "writes-elsewhere"])
def test_events_routed_through_sns_sqs_or_eventbridge(
    dev: ProgramRun, route: dict[str, Any], fragment: str | None, writes_back: bool
) -> None:
    """The pack does not follow a topic, queue or EventBridge to its consumers: any function that writes back counts."""
    resources = resources_of(dev)
    notification = named(resources, NOTIFICATION, "upload-notification")
    set_props(notification, lambdaFunctions=[], **route)
    if writes_back:
        upload_arn = named(resources, BUCKET, "upload").state["arn"]
        write_back = {"Sid": "WriteBack", "Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{upload_arn}/*"}
        rewrite_policy(
            named(resources, ROLE_POLICY, "function-policy"), lambda doc: doc["Statement"].append(write_back)
        )
    result = evaluate(resources)
    if writes_back and fragment:
        violation = assert_fires(result, "s3-notification-no-recursion", notification, fragment, "'pipeline-upload'")
        assert "Function 'pipeline-function' may s3:PutObject into it" in violation.message
    else:
        assert result.violations == []


@pytest.mark.parametrize(("type_token", "role_prop", "arn_prop"), ROLE_ATTACHMENTS)
def test_write_access_from_an_attached_policy_counts(
    dev: ProgramRun, type_token: str, role_prop: str, arn_prop: str
) -> None:
    resources = resources_of(dev)
    upload_arn = named(resources, BUCKET, "upload").state["arn"]
    resources = with_managed_policy(
        resources, {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"{upload_arn}/*"}
    )
    resources = attached(resources, type_token, role_prop, arn_prop, resources[-1].state["arn"])
    notification = named(resources, NOTIFICATION, "upload-notification")
    assert_fires(evaluate(resources), "s3-notification-no-recursion", notification, "may s3:PutObject into it")


# --- tags ----------------------------------------------------------------------------------------


def test_missing_tags_without_provider_default_tags(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    drop_prop(named(resources, "pulumi:providers:aws", ""), "defaultTags")
    violations = only(evaluate(resources), "required-tags")
    taggable = {r.urn for r in resources if r.type in TAGGED}
    assert {v.urn for v in violations} == taggable
    assert len(taggable) == 9, "3 buckets, role, function, log group, queue and 2 alarms"
    queue = named(resources, "aws:sqs/queue:Queue", "dead-letter")
    message = next(v.message for v in violations if v.urn == queue.urn)
    assert "'pipeline-dead-letter'" in message
    assert "['project', 'stack', 'managed-by']" in message


def test_own_tags_make_up_for_missing_default_tags(dev: ProgramRun) -> None:
    resources = resources_of(dev)
    drop_prop(named(resources, "pulumi:providers:aws", ""), "defaultTags")
    tags = {"project": "image-pipeline", "stack": "dev", "managed-by": "pulumi"}
    for registration in resources:
        if registration.type in TAGGED:
            set_props(registration, tags=tags)
    assert evaluate(resources).violations == []


def test_required_tags_come_from_the_policy_config(dev: ProgramRun) -> None:
    result = evaluate(dev.resources, {"required-tags": {"requiredTags": ["cost-centre"]}})
    violations = only(result, "required-tags")
    assert len(violations) == 9
    assert all("['cost-centre']" in v.message for v in violations)


def test_every_policy_has_a_breakage_test() -> None:
    """A rule added to the pack without a test here fails this list."""
    tested = {
        "s3-bucket-public-access-block",
        "s3-bucket-encryption",
        "s3-bucket-versioning",
        "s3-bucket-ownership-enforced",
        "s3-bucket-tls-only",
        "s3-no-public-grants",
        "iam-no-wildcards",
        "lambda-log-retention",
        "lambda-failure-destination",
        "lambda-failure-alarm",
        "lambda-timeout",
        "lambda-runtime-architecture",
        "lambda-layer-compatibility",
        "lambda-permission-source",
        "s3-notification-no-recursion",
        "required-tags",
    }
    assert {policy.name for policy in POLICIES} == tested
