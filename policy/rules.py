"""The image pipeline's guardrails as pulumi-policy rules, importable without the Pulumi CLI.

`__main__.py` hands `POLICIES` to `PolicyPack` when the CLI runs the pack; `harness.py` feeds the
same objects the resources a program run declared, so the tests exercise exactly what CI enforces.

Rules look at what the engine sends: resource rules see a resource's inputs, stack rules see every
resource's outputs (camelCase names). S3 and Lambda settings live on separate resources in
pulumi-aws v7 (`BucketVersioning`, `FunctionEventInvokeConfig`, ...), so stack rules link them back
to their bucket or function through the engine's property dependencies, then by value (id, name,
ARN), then by parent. A value that is unknown during preview is never judged a violation: the same
rule runs again on `pulumi up`, when the value is known.

This module imports nothing from the project, because the CLI runs the pack from `policy/` alone.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyProviderResource,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK_NAME = "image-pipeline-guardrails"
DEFAULT_ENFORCEMENT = EnforcementLevel.MANDATORY
"""Mandatory unless a config file relaxes a rule: a stack with no config gets the strict pack."""

BUCKET_TYPES = frozenset({"aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2"})
PUBLIC_ACCESS_BLOCK_TYPES = frozenset({"aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"})
ENCRYPTION_TYPES = frozenset(
    {
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
    }
)
VERSIONING_TYPES = frozenset(
    {"aws:s3/bucketVersioning:BucketVersioning", "aws:s3/bucketVersioningV2:BucketVersioningV2"}
)
OWNERSHIP_TYPES = frozenset({"aws:s3/bucketOwnershipControls:BucketOwnershipControls"})
BUCKET_POLICY_TYPES = frozenset({"aws:s3/bucketPolicy:BucketPolicy"})
BUCKET_ACL_TYPES = frozenset({"aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2"})
NOTIFICATION_TYPES = frozenset({"aws:s3/bucketNotification:BucketNotification"})
ROLE_TYPES = frozenset({"aws:iam/role:Role"})
ROLE_POLICY_TYPES = frozenset({"aws:iam/rolePolicy:RolePolicy"})
ROLE_POLICIES_EXCLUSIVE_TYPES = frozenset({"aws:iam/rolePoliciesExclusive:RolePoliciesExclusive"})
ROLE_ATTACHMENT_PROPS = {
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": ("role", "policyArn"),
    "aws:iam/policyAttachment:PolicyAttachment": ("roles", "policyArn"),
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": ("roleName", "policyArns"),
}
"""Resources that attach managed policies to roles: (property naming the role(s), property with the ARN(s))."""
ROLE_ATTACHMENT_TYPES = frozenset(ROLE_ATTACHMENT_PROPS)
MANAGED_POLICY_TYPES = frozenset({"aws:iam/policy:Policy"})
FUNCTION_TYPES = frozenset({"aws:lambda/function:Function"})
EVENT_INVOKE_CONFIG_TYPES = frozenset({"aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig"})
PERMISSION_TYPES = frozenset({"aws:lambda/permission:Permission"})
FUNCTION_URL_TYPES = frozenset({"aws:lambda/functionUrl:FunctionUrl"})
LOG_GROUP_TYPES = frozenset({"aws:cloudwatch/logGroup:LogGroup"})
METRIC_ALARM_TYPES = frozenset({"aws:cloudwatch/metricAlarm:MetricAlarm"})
SQS_DEPTH_METRIC = "ApproximateNumberOfMessagesVisible"
LAYER_TYPES = frozenset({"aws:lambda/layerVersion:LayerVersion"})

TAGGABLE_TYPES = frozenset(
    BUCKET_TYPES
    | ROLE_TYPES
    | MANAGED_POLICY_TYPES
    | FUNCTION_TYPES
    | LOG_GROUP_TYPES
    | METRIC_ALARM_TYPES
    | {"aws:sqs/queue:Queue", "aws:sns/topic:Topic", "aws:kms/key:Key"}
)
"""Types this pipeline uses that accept `tags`; a resource without a `tags` input can't be told apart otherwise."""

DEFAULT_REQUIRED_TAGS = ("project", "stack", "managed-by")
DEFAULT_ALLOWED_RUNTIMES = (
    "python3.11",
    "python3.12",
    "python3.13",
    "python3.14",
    "nodejs22.x",
    "nodejs24.x",
    "java17",
    "java21",
    "java25",
    "dotnet8",
    "dotnet10",
    "ruby3.3",
    "ruby3.4",
    "provided.al2023",
)
"""Lambda runtimes not deprecated as of late 2026 (AWS "Lambda runtimes" page); configurable per stack."""
DEFAULT_ALLOWED_ARCHITECTURES = ("arm64", "x86_64")
LAMBDA_MAX_TIMEOUT_SECONDS = 900
RESOURCE_LEVEL_UNSUPPORTED_ACTIONS = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "cloudwatch:PutMetricData",
)
"""Actions AWS only authorizes with `"Resource": "*"`; a statement made of these alone may use it."""

AWS_MANAGED_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/")
PUBLIC_ACLS = frozenset({"public-read", "public-read-write", "authenticated-read"})
PUBLIC_GRANTEE_URIS = frozenset(
    {
        "http://acs.amazonaws.com/groups/global/AllUsers",
        "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
    }
)
RESTRICTING_CONDITION_KEYS = frozenset(
    key.lower()
    for key in (
        "aws:SourceArn",
        "aws:SourceAccount",
        "aws:SourceOwner",
        "aws:SourceVpc",
        "aws:SourceVpce",
        "aws:SourceIp",
        "aws:PrincipalOrgID",
        "aws:PrincipalOrgPaths",
        "aws:PrincipalAccount",
        "aws:PrincipalArn",
        "aws:userid",
    )
)
"""Condition keys that, pinned to fixed values, make a `Principal: "*"` statement non-public (as S3's own check)."""


# --- reading properties safely -------------------------------------------------------------------


class _Unknown:
    """A value the engine can't know yet (preview); distinct from absent, and never a violation."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Any = _Unknown()


def known(props: Any, *path: str | int) -> Any:
    """Follow `path` into `props`; None if absent, UNKNOWN if any step is unknown during preview."""
    value = props
    for step in path:
        try:
            if isinstance(value, Mapping):
                value = value.get(step) if isinstance(step, str) else None
            elif isinstance(value, Sequence) and not isinstance(value, str) and isinstance(step, int):
                value = value[step] if -len(value) <= step < len(value) else None
            else:
                return None
        except UnknownValueError:
            return UNKNOWN
        if value is None:
            return None
    return value


def items(value: Any) -> list[Any]:
    """A list property as a plain list: absent or unknown is empty, a lone item is a list of one."""
    if value is None or value is UNKNOWN:
        return []
    if isinstance(value, Sequence) and not isinstance(value, str):
        result = []
        for index in range(len(value)):
            try:
                result.append(value[index])
            except UnknownValueError:
                result.append(UNKNOWN)
        return result
    return [value]


def plain(value: Any) -> Any:
    """Unwrap pulumi-policy's unknown-checking proxies into dicts/lists; unknown leaves become UNKNOWN."""
    if isinstance(value, Mapping):
        return {key: plain(known(value, key)) for key in value}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain(item) for item in items(value)]
    return value


def is_number(value: Any) -> bool:
    """Numbers reach policies as floats (protobuf Struct), so `7.0` days counts; booleans don't."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def policy_document(value: Any) -> dict[str, Any] | _Unknown | None:
    """An IAM/bucket policy document from its JSON text (or object); None if absent or unparseable."""
    if value is None or value is UNKNOWN:
        return value
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except ValueError:
            return None
    value = plain(value)
    return value if isinstance(value, dict) else None


def statements(document: Any) -> list[dict[str, Any]]:
    """The statements of a parsed policy document (`Statement` may be one object or a list)."""
    if not isinstance(document, dict):
        return []
    return [s for s in items(document.get("Statement")) if isinstance(s, dict)]


def as_strings(value: Any) -> list[str]:
    """An IAM string-or-list field as a list of strings."""
    return [v for v in items(value) if isinstance(v, str)]


def json_or_mapping(value: Any) -> Mapping[str, Any] | _Unknown | None:
    """Provider config such as `defaultTags` arrives as JSON text from the Python SDK, or as an object."""
    if value is None or value is UNKNOWN:
        return value
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    value = plain(value)
    return value if isinstance(value, Mapping) else None


# --- naming and linking resources ----------------------------------------------------------------


def describe(resource: PolicyResource | ResourceValidationArgs) -> str:
    """How messages name a resource: its short type and logical name, e.g. `Bucket 'dev-uploads'`."""
    short_type = resource.resource_type.rsplit(":", 1)[-1]
    return f"{short_type} {resource.name!r}"


def identifiers(resource: PolicyResource) -> set[str]:
    """Every known string another resource may use to point at this one (id, name, ARN, URN)."""
    found = {resource.urn}
    for key in ("id", "bucket", "name", "arn", "functionName"):
        value = known(resource.props, key)
        if isinstance(value, str) and value:
            found.add(value)
    return found


def _points_at(value: str, target: PolicyResource) -> bool:
    names = identifiers(target)
    if value in names:
        return True
    # A qualified Lambda ARN (`...:function:name:alias`) still points at the function.
    return any(name.startswith("arn:") and value.startswith(name + ":") for name in names)


def linked(reference: PolicyResource, prop: str, candidates: Iterable[PolicyResource]) -> list[PolicyResource]:
    """The candidates `reference.<prop>` points at.

    First the engine's property dependencies (the only link during preview, when an id is
    unknown), then equal values (id, name, ARN), then, if the value is unknown, the parent.
    """
    candidates = list(candidates)
    dependencies = reference.property_dependencies.get(prop) or []
    by_dependency = [c for c in candidates if any(c is d for d in dependencies)]
    if by_dependency:
        return by_dependency
    value = known(reference.props, prop)
    if isinstance(value, str):
        return [c for c in candidates if _points_at(value, c)]
    if value is UNKNOWN and reference.parent is not None:
        return [c for c in candidates if c is reference.parent]
    return []


def linked_all(reference: PolicyResource, prop: str, candidates: Iterable[PolicyResource]) -> list[PolicyResource]:
    """The candidates any entry of a list property (`roles`, `policyArns`) points at, by dependency or value."""
    dependencies = reference.property_dependencies.get(prop) or []
    values = [v for v in items(known(reference.props, prop)) if isinstance(v, str)]
    return [c for c in candidates if any(c is d for d in dependencies) or any(_points_at(value, c) for value in values)]


def of_types(resources: Iterable[PolicyResource], types: frozenset[str]) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in types]


def attachments(
    resources: Sequence[PolicyResource], types: frozenset[str], target: PolicyResource, prop: str = "bucket"
) -> list[PolicyResource]:
    """The separate resources of `types` whose `prop` points at `target`."""
    return [r for r in of_types(resources, types) if any(t is target for t in linked(r, prop, [target]))]


def is_unknown_link(resource: PolicyResource, prop: str) -> bool:
    """True when `prop` can't be resolved yet (preview) and no dependency says where it points."""
    return known(resource.props, prop) is UNKNOWN and not resource.property_dependencies.get(prop)


def config_value(args: ResourceValidationArgs | StackValidationArgs, key: str, default: Any) -> Any:
    """A policy's config value, or the default the schema documents (the CLI may not fill it in)."""
    value = args.get_config().get(key)
    return default if value is None else value


# --- IAM statement analysis ----------------------------------------------------------------------


def is_public_principal(principal: Any) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return "*" in as_strings(principal.get("AWS"))
    return False


_EVERY_ADDRESS = frozenset({"0.0.0.0/0", "::/0"})
_PINNING_OPERATORS = frozenset(
    {"stringequals", "stringequalsignorecase", "stringlike", "arnequals", "arnlike", "ipaddress"}
)


def _fixed_values(values: Any) -> bool:
    """S3 counts a condition as restricting only with fixed values: no wildcard, no policy variable."""
    listed = items(values)
    return bool(listed) and all(
        isinstance(v, str) and v and not any(c in v for c in ("*", "?", "${")) and v not in _EVERY_ADDRESS
        for v in listed
    )


def has_restricting_condition(statement: Mapping[str, Any]) -> bool:
    """A condition pinning one of `RESTRICTING_CONDITION_KEYS` to fixed values, with a positive operator.

    `StringNotEquals`/`NotIpAddress` exclude some callers and admit everyone else, `...IfExists` and
    `ForAllValues:` pass requests that lack the key, and `Null`/`Bool` pin no value, so none restricts.
    """
    condition = statement.get("Condition")
    if not isinstance(condition, dict):
        return False
    for operator, operator_block in condition.items():
        name = str(operator).lower().removeprefix("foranyvalue:")
        if name not in _PINNING_OPERATORS or not isinstance(operator_block, dict):
            continue
        for key, values in operator_block.items():
            if str(key).lower() in RESTRICTING_CONDITION_KEYS and _fixed_values(values):
                return True
    return False


def public_allow_statements(document: Any) -> list[dict[str, Any]]:
    """Allow statements open to everyone (`Principal: "*"`) with no condition pinning who or where."""
    return [
        s
        for s in statements(document)
        if s.get("Effect") == "Allow" and is_public_principal(s.get("Principal")) and not has_restricting_condition(s)
    ]


def _has_wildcard(text: str) -> bool:
    return "*" in text or "?" in text


def is_wildcard_action(action: str) -> bool:
    """IAM matches `*` and `?` anywhere in an action: `s3:Put*` grants every Put action, today's and future ones."""
    return _has_wildcard(action)


_TYPED_RESOURCE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)([:/])(.*)$", re.DOTALL)


def is_wildcard_resource(resource: str) -> bool:
    """Does this resource reach more than one named resource? Wildcards may only narrow *within* one.

    IAM's `*` also matches colons, so a wildcard in the partition, service, region or account, or
    in an ARN that ends before its resource part (`arn:*`, `arn:aws:s3:*`, `arn:aws:logs:us-east-1:*`),
    reaches every resource of a service, region or account. The named resource must be literal: an
    S3 bucket (`arn:aws:s3:::bucket/*` is that bucket's objects), or the name after a resource type
    (`log-group:NAME:*` is one group's streams, `table/NAME/index/*` one table's indexes), or an
    untyped name (`arn:aws:sqs:...:queue`). So `log-group:*`, `arn:aws:s3:::photos-*` and
    `arn:aws:sqs:*:123456789012:q` are wildcards. An IAM resource is named by the last part of its
    path (`role/service-role/NAME`), so a wildcard anywhere after its type (`role/service-role/*`)
    reaches every role under that path.
    """
    if _has_wildcard(resource) and not resource.startswith("arn:"):
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return _has_wildcard(resource)  # without a wildcard, too short to match any ARN
    _, partition, service, region, account, name = parts
    if any(_has_wildcard(scope) for scope in (partition, service, region, account)) or not name:
        return True
    if service == "s3" and not region and not account:
        return _has_wildcard(name.split("/", 1)[0])
    typed = _TYPED_RESOURCE.match(name)
    if typed is None:
        return _has_wildcard(name)
    _, delimiter, rest = typed.groups()
    named = rest if service == "iam" else rest.split(delimiter, 1)[0]
    return not named or _has_wildcard(named)


def wildcard_problems(document: Any, allowed_star_resource_actions: Iterable[str]) -> list[str]:
    """What in a policy's Allow statements is a wildcard: actions with `*`/`?`, wide resources, Not* forms."""
    allowed = {a.lower() for a in allowed_star_resource_actions}
    problems = []
    for index, statement in enumerate(statements(document)):
        if statement.get("Effect") != "Allow":
            continue
        label = f"statement {statement.get('Sid') or index}"
        actions = as_strings(statement.get("Action"))
        if "NotAction" in statement:
            problems.append(f"{label} allows NotAction (everything but a list)")
        problems.extend(f"{label} allows action {a!r}" for a in actions if is_wildcard_action(a))
        if "NotResource" in statement:
            problems.append(f"{label} allows NotResource (everything but a list)")
        only_unscopable = bool(actions) and all(a.lower() in allowed for a in actions)
        for resource in as_strings(statement.get("Resource")):
            if is_wildcard_resource(resource) and not only_unscopable:
                problems.append(f"{label} allows resource {resource!r} for {actions or 'its actions'}")
    return problems


def action_granted(statement: Mapping[str, Any], action: str) -> bool:
    """Does this statement's Action list cover `action` (IAM wildcards, case-insensitive)?"""
    if "NotAction" in statement:
        return not any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in as_strings(statement["NotAction"]))
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in as_strings(statement.get("Action")))


def grants_write_to_bucket(document: Any, bucket_names: Iterable[str]) -> bool:
    """Does an Allow statement grant s3:PutObject on objects of any of these bucket names?"""
    object_arns = [f"arn:aws:s3:::{name}/recursion-probe" for name in bucket_names]
    for statement in statements(document):
        if statement.get("Effect") != "Allow" or not action_granted(statement, "s3:PutObject"):
            continue
        if "NotResource" in statement:
            return True
        for pattern in as_strings(statement.get("Resource")):
            if any(fnmatch.fnmatchcase(arn, pattern) for arn in object_arns):
                return True
    return False


# --- S3 bucket rules (stack) ---------------------------------------------------------------------


def _each_of(
    types: frozenset[str],
    check: Callable[[PolicyResource, Sequence[PolicyResource]], str | None],
) -> Callable[[StackValidationArgs, ReportViolation], None]:
    """Run `check(resource, all_resources)` for every resource of `types`; a returned message is a violation."""

    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        for resource in of_types(args.resources, types):
            message = check(resource, args.resources)
            if message:
                report_violation(f"{describe(resource)}: {message}", resource.urn)

    return validate


def _undecided(related: Sequence[PolicyResource], resources: Sequence[PolicyResource], types: frozenset[str]) -> bool:
    """No linked resource found, but one of `types` can't be linked yet (preview): don't judge."""
    return not related and any(is_unknown_link(r, "bucket") for r in of_types(resources, types))


def check_public_access_block(bucket: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    blocks = attachments(resources, PUBLIC_ACCESS_BLOCK_TYPES, bucket)
    if _undecided(blocks, resources, PUBLIC_ACCESS_BLOCK_TYPES):
        return None
    if not blocks:
        return "has no BucketPublicAccessBlock"
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for block in blocks:
        values = {flag: known(block.props, flag) for flag in flags}
        if UNKNOWN in values.values():
            return None
        if all(v is True for v in values.values()):
            return None
    off = sorted({flag for block in blocks for flag in flags if known(block.props, flag) is not True})
    return f"its BucketPublicAccessBlock leaves {', '.join(off)} off (all four must be true)"


def check_encryption(bucket: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    inline = known(bucket.props, "serverSideEncryptionConfiguration", "rule", "applyServerSideEncryptionByDefault")
    if inline is UNKNOWN or isinstance(known(inline, "sseAlgorithm"), str):
        return None
    configurations = attachments(resources, ENCRYPTION_TYPES, bucket)
    if _undecided(configurations, resources, ENCRYPTION_TYPES):
        return None
    for configuration in configurations:
        for rule in items(known(configuration.props, "rules")):
            algorithm = known(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
            if algorithm is UNKNOWN or (isinstance(algorithm, str) and algorithm):
                return None
    return "has no default encryption (a BucketServerSideEncryptionConfiguration rule with an sseAlgorithm)"


def check_versioning(bucket: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    inline = known(bucket.props, "versioning", "enabled")
    if inline is True or inline is UNKNOWN:
        return None
    versionings = attachments(resources, VERSIONING_TYPES, bucket)
    if _undecided(versionings, resources, VERSIONING_TYPES):
        return None
    statuses = [known(v.props, "versioningConfiguration", "status") for v in versionings]
    if "Enabled" in statuses or UNKNOWN in statuses:
        return None
    if statuses:
        return f"versioning is {statuses[0]!r}, not 'Enabled'"
    return "has no BucketVersioning with status 'Enabled'"


def check_ownership(bucket: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    controls = attachments(resources, OWNERSHIP_TYPES, bucket)
    if _undecided(controls, resources, OWNERSHIP_TYPES):
        return None
    settings = [known(c.props, "rule", "objectOwnership") for c in controls]
    if "BucketOwnerEnforced" in settings or UNKNOWN in settings:
        return None
    if settings:
        return f"object ownership is {settings[0]!r}, not 'BucketOwnerEnforced' (ACLs stay enabled)"
    return "has no BucketOwnershipControls with 'BucketOwnerEnforced' (ACLs stay enabled)"


def tls_deny_resources(document: Any) -> list[str]:
    """The resources of statements denying everyone s3 object requests when `aws:SecureTransport` is false."""
    found = []
    for statement in statements(document):
        if statement.get("Effect") != "Deny" or not is_public_principal(statement.get("Principal")):
            continue
        if not action_granted(statement, "s3:GetObject") or not action_granted(statement, "s3:PutObject"):
            continue
        if condition_values(statement, "Bool", "aws:SecureTransport") != ["false"]:
            continue
        found.extend(as_strings(statement.get("Resource")))
    return found


def covers_bucket(patterns: Sequence[str], bucket_arn: Any) -> bool:
    """Do these resource patterns match the bucket's own ARN and every object in it (`ARN/*`)?

    A pattern ending in `*` that matches `ARN/` matches `ARN/<any key>`. With the ARN unknown
    (preview) any object pattern counts: `pulumi up` runs the rule again with the ARN known.
    """
    if not isinstance(bucket_arn, str):
        return any(p == "*" or p.endswith("/*") for p in patterns)
    bucket = any(fnmatch.fnmatchcase(bucket_arn, p) for p in patterns)
    objects = any(p.endswith("*") and fnmatch.fnmatchcase(f"{bucket_arn}/", p) for p in patterns)
    return bucket and objects


def condition_values(statement: Mapping[str, Any], operator: str, key: str) -> list[str]:
    """The values a statement's condition tests `key` against with `operator`, lowercased.

    IAM matches condition keys case-insensitively and takes a value or a list of values.
    """
    condition = statement.get("Condition")
    block = condition.get(operator) if isinstance(condition, Mapping) else None
    if not isinstance(block, Mapping):
        return []
    values = [value for name, value in block.items() if isinstance(name, str) and name.lower() == key.lower()]
    return [str(v).lower() for value in values for v in items(value)]


def check_tls_only(bucket: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    documents = [policy_document(known(bucket.props, "policy"))]
    policies = attachments(resources, BUCKET_POLICY_TYPES, bucket)
    if _undecided(policies, resources, BUCKET_POLICY_TYPES):
        return None
    documents.extend(policy_document(known(p.props, "policy")) for p in policies)
    if any(d is UNKNOWN for d in documents):
        return None
    arn = known(bucket.props, "arn")
    patterns = [resource for document in documents for resource in tls_deny_resources(document)]
    if patterns and covers_bucket(patterns, arn):
        return None
    if not policies:
        return "has no BucketPolicy denying requests without TLS (aws:SecureTransport false)"
    target = f"{arn} and {arn}/*" if isinstance(arn, str) else "the bucket and bucket/*"
    if patterns:
        return f"its bucket policy denies requests without TLS only on {patterns}, which do not cover {target}"
    return (
        "its bucket policy does not deny requests without TLS "
        f"(Deny s3:* to '*' on {target} if aws:SecureTransport is false)"
    )


# --- public access through ACLs and policies (resource) ------------------------------------------


def validate_no_public_grants(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Buckets, ACLs and bucket policies: no public canned ACL, grant to AllUsers, or open Allow."""
    if args.resource_type not in BUCKET_TYPES | BUCKET_ACL_TYPES | BUCKET_POLICY_TYPES:
        return
    acl = known(args.props, "acl")
    if isinstance(acl, str) and acl in PUBLIC_ACLS:
        report_violation(f"{describe(args)} uses the public canned ACL {acl!r}", None)
    grants = items(known(args.props, "grants")) + items(known(args.props, "accessControlPolicy", "grants"))
    for grant in grants:
        uri = known(grant, "uri")
        if not isinstance(uri, str):
            uri = known(grant, "grantee", "uri")
        if isinstance(uri, str) and uri in PUBLIC_GRANTEE_URIS:
            report_violation(f"{describe(args)} grants access to the public group {uri}", None)
    document = policy_document(known(args.props, "policy"))
    for statement in public_allow_statements(document):
        sid = statement.get("Sid") or "(no Sid)"
        report_violation(
            f"{describe(args)}: statement {sid} allows {as_strings(statement.get('Action'))} to Principal '*' "
            "without a condition restricting the caller (aws:SourceArn, aws:SourceAccount, aws:PrincipalOrgID, ...)",
            None,
        )


# --- IAM wildcards (stack) -----------------------------------------------------------------------


def validate_no_iam_wildcards(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """Every policy a role may carry: inline on the Role, RolePolicy, and managed policies attached.

    Managed policies count however they are attached (`Role.managedPolicyArns`, RolePolicyAttachment,
    PolicyAttachment, RolePolicyAttachmentsExclusive). A RolePoliciesExclusive keeps the inline
    policies it names: those this stack doesn't declare can't be inspected, so they are reported.
    """
    allowed_star = config_value(args, "allowedStarResourceActions", list(RESOURCE_LEVEL_UNSUPPORTED_ACTIONS))
    allowed_managed = set(config_value(args, "allowedManagedPolicyArns", []))
    managed_policies = of_types(args.resources, MANAGED_POLICY_TYPES)
    roles = of_types(args.resources, ROLE_TYPES)
    role_policies = of_types(args.resources, ROLE_POLICY_TYPES)

    def check(owner: PolicyResource, where: str, raw_document: Any) -> None:
        for problem in wildcard_problems(policy_document(raw_document), allowed_star):
            report_violation(f"{describe(owner)}: {where} {problem}", owner.urn)

    def check_attached(owner: PolicyResource, arns: list[Any], defined_here: list[PolicyResource]) -> None:
        """A managed policy is judged by its document if this stack declares it, else by its ARN."""
        for managed in defined_here:
            check(owner, f"managed policy {managed.name!r}", known(managed.props, "policy"))
        for arn in arns:
            if not isinstance(arn, str) or arn in allowed_managed or any(_points_at(arn, p) for p in defined_here):
                continue
            origin = "the AWS-managed policy" if AWS_MANAGED_POLICY.match(arn) else "a policy from outside this stack,"
            report_violation(
                f"{describe(owner)}: attaches {origin} {arn} whose statements this pack can't inspect; use a scoped "
                "inline policy, or list the ARN in allowedManagedPolicyArns once reviewed",
                owner.urn,
            )

    for role in roles:
        for inline in items(known(role.props, "inlinePolicies")):
            check(role, f"inline policy {known(inline, 'name')!r}", known(inline, "policy"))
        arns = items(known(role.props, "managedPolicyArns"))
        check_attached(role, arns, linked_all(role, "managedPolicyArns", managed_policies))
    for role_policy in role_policies:
        check(role_policy, "policy", known(role_policy.props, "policy"))
    for attachment in of_types(args.resources, ROLE_ATTACHMENT_TYPES):
        _, arn_prop = ROLE_ATTACHMENT_PROPS[attachment.resource_type]
        arns = items(known(attachment.props, arn_prop))
        check_attached(attachment, arns, linked_all(attachment, arn_prop, managed_policies))

    role_policy_names = {known(p.props, "name") for p in role_policies}
    if UNKNOWN in role_policy_names or None in role_policy_names:
        return  # a RolePolicy's name is not known yet (preview), so it may be any of the names kept
    declared_inline = role_policy_names | {
        known(inline, "name") for role in roles for inline in items(known(role.props, "inlinePolicies"))
    }
    for exclusive in of_types(args.resources, ROLE_POLICIES_EXCLUSIVE_TYPES):
        for name in items(known(exclusive.props, "policyNames")):
            if isinstance(name, str) and name not in declared_inline:
                report_violation(
                    f"{describe(exclusive)}: keeps the inline policy {name!r}, which this stack doesn't declare, so "
                    "its statements can't be inspected; declare it as an aws.iam.RolePolicy",
                    exclusive.urn,
                )


# --- Lambda functions (stack and resource) -------------------------------------------------------


def check_log_retention(function: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    """The function's log group: `loggingConfig.logGroup` if set, else `/aws/lambda/<name>`."""
    log_groups = of_types(resources, LOG_GROUP_TYPES)
    custom = known(function.props, "loggingConfig", "logGroup")
    function_name = known(function.props, "name")
    if custom is UNKNOWN or function_name is UNKNOWN:
        return None
    if isinstance(custom, str) and custom:
        expected = custom
    else:
        expected = f"/aws/lambda/{function_name}" if function_name else "/aws/lambda/<function name>"
    matches = [
        g
        for g in log_groups
        if known(g.props, "name") == expected or any(function is d for d in g.property_dependencies.get("name", []))
    ]
    if not matches:
        if any(known(g.props, "name") is UNKNOWN for g in log_groups):
            return None
        return f"has no LogGroup named {expected!r}, so Lambda creates one that keeps logs forever"
    retention = [known(g.props, "retentionInDays") for g in matches]
    if UNKNOWN in retention or any(is_number(days) and days > 0 for days in retention):
        return None
    return f"its LogGroup {expected!r} sets no retentionInDays, so logs are kept forever"


def _failure_destinations(function: PolicyResource, resources: Sequence[PolicyResource]) -> list[Any]:
    """The function's dead-letter target and on-failure destinations (ARNs, UNKNOWN during preview, or empty)."""
    destinations = [known(function.props, "deadLetterConfig", "targetArn")]
    configs = attachments(resources, EVENT_INVOKE_CONFIG_TYPES, function, prop="functionName")
    if not configs and any(is_unknown_link(c, "functionName") for c in of_types(resources, EVENT_INVOKE_CONFIG_TYPES)):
        destinations.append(UNKNOWN)
    destinations += [known(c.props, "destinationConfig", "onFailure", "destination") for c in configs]
    return destinations


def check_failure_destination(function: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    destinations = _failure_destinations(function, resources)
    if UNKNOWN in destinations or any(isinstance(d, str) and d for d in destinations):
        return None
    return (
        "has no on-failure destination (FunctionEventInvokeConfig destinationConfig.onFailure) "
        "nor deadLetterConfig, so failed async invocations (S3 events) are dropped silently"
    )


def _watches_queue(alarm: PolicyResource, queue_name: str) -> bool:
    props = alarm.props
    if known(props, "namespace") != "AWS/SQS" or known(props, "metricName") != SQS_DEPTH_METRIC:
        return False
    watched = known(props, "dimensions", "QueueName")
    return watched is UNKNOWN or watched == queue_name


def check_failure_alarm(function: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    """An SQS queue the function's failed events go to needs an alarm on its depth: nobody reads it otherwise.

    SNS, EventBridge and Lambda destinations deliver onwards and are not judged; neither is a queue whose ARN
    is unknown until deploy (the rule runs again then).
    """
    alarms = of_types(resources, METRIC_ALARM_TYPES)
    for destination in _failure_destinations(function, resources):
        parts = destination.split(":") if isinstance(destination, str) else []
        if len(parts) != 6 or parts[2] != "sqs":
            continue
        if not any(_watches_queue(alarm, parts[5]) for alarm in alarms):
            return (
                f"sends failed events to the SQS queue {parts[5]!r}, but no CloudWatch alarm watches its "
                f"{SQS_DEPTH_METRIC}, so failed uploads pile up there unnoticed"
            )
    return None


def validate_timeout(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in FUNCTION_TYPES:
        return
    limit = config_value(args, "maximumTimeoutSeconds", LAMBDA_MAX_TIMEOUT_SECONDS)
    timeout = known(args.props, "timeout")
    if is_number(timeout) and timeout > limit:
        report_violation(f"{describe(args)} has timeout {timeout} s, above the {limit} s limit", None)


def validate_runtime_and_architecture(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in FUNCTION_TYPES:
        return
    runtimes = config_value(args, "allowedRuntimes", list(DEFAULT_ALLOWED_RUNTIMES))
    architectures = config_value(args, "allowedArchitectures", list(DEFAULT_ALLOWED_ARCHITECTURES))
    if known(args.props, "packageType") != "Image":
        runtime = known(args.props, "runtime")
        if runtime is None:
            report_violation(f"{describe(args)} sets no runtime", None)
        elif runtime is not UNKNOWN and runtime not in runtimes:
            report_violation(f"{describe(args)} uses runtime {runtime!r}, not one of {runtimes}", None)
    declared = known(args.props, "architectures")
    if declared is UNKNOWN:
        return
    for architecture in items(declared) or ["x86_64"]:
        if architecture is not UNKNOWN and architecture not in architectures:
            report_violation(f"{describe(args)} uses architecture {architecture!r}, not one of {architectures}", None)


def check_layer_compatibility(function: PolicyResource, resources: Sequence[PolicyResource]) -> str | None:
    """A layer built for another runtime or architecture (a native Pillow wheel) fails at import time."""
    layers = of_types(resources, LAYER_TYPES)
    used = [
        layer
        for arn in items(known(function.props, "layers"))
        if isinstance(arn, str)
        for layer in layers
        if _points_at(arn, layer)
    ]
    if not used:
        dependencies = function.property_dependencies.get("layers", [])
        used = [layer for layer in layers if any(layer is d for d in dependencies)]
    runtime = known(function.props, "runtime")
    architectures = known(function.props, "architectures")
    architecture = UNKNOWN if architectures is UNKNOWN else (items(architectures) or ["x86_64"])[0]
    problems = []
    for layer in used:
        runtimes = known(layer.props, "compatibleRuntimes")
        layer_architectures = known(layer.props, "compatibleArchitectures")
        if isinstance(runtime, str) and runtimes not in (None, UNKNOWN) and runtime not in items(runtimes):
            problems.append(f"{describe(layer)} lists runtimes {items(runtimes)}, not {runtime!r}")
        if (
            isinstance(architecture, str)
            and layer_architectures not in (None, UNKNOWN)
            and architecture not in items(layer_architectures)
        ):
            problems.append(f"{describe(layer)} lists architectures {items(layer_architectures)}, not {architecture!r}")
    return "; ".join(problems) or None


def is_service_principal(principal: Any) -> bool:
    return isinstance(principal, str) and (
        principal.endswith(".amazonaws.com") or principal.endswith(".amazonaws.com.cn")
    )


def validate_permission_source(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Who may invoke the function: never everyone, and any other caller only from a pinned source.

    The pack can't know the deploying account, so an account principal (an ID or an ARN) counts as
    another account's and needs sourceArn or principalOrgId. A function URL without IAM auth is public.
    """
    if args.resource_type in FUNCTION_URL_TYPES:
        if known(args.props, "authorizationType") == "NONE":
            report_violation(
                f"{describe(args)} has authorizationType NONE: anyone who finds the URL can invoke the function",
                None,
            )
        return
    if args.resource_type not in PERMISSION_TYPES:
        return
    principal = known(args.props, "principal")
    if not isinstance(principal, str):
        return
    source_arn = known(args.props, "sourceArn")
    if principal == "*":
        report_violation(
            f"{describe(args)} lets anyone (principal '*') invoke the function; name the service or account "
            "that calls it",
            None,
        )
    elif not is_service_principal(principal):
        if source_arn is None and known(args.props, "principalOrgId") is None:
            report_violation(
                f"{describe(args)} lets {principal!r} invoke the function with neither sourceArn nor principalOrgId; "
                f"this pack can't tell whether {principal!r} is the deploying account, so pin the caller with "
                "source_arn or principal_org_id",
                None,
            )
    else:
        if source_arn is None:
            report_violation(
                f"{describe(args)} lets {principal} invoke the function without sourceArn, so any "
                f"{principal.split('.')[0]} resource (in any account) can",
                None,
            )
        if principal.startswith("s3.") and known(args.props, "sourceAccount") is None:
            report_violation(
                f"{describe(args)} lets s3.amazonaws.com invoke the function without sourceAccount; bucket ARNs "
                "carry no account, so a same-named bucket elsewhere could invoke it",
                None,
            )


# --- S3 -> Lambda recursion (stack) --------------------------------------------------------------


def _role_documents(role: PolicyResource, resources: Sequence[PolicyResource]) -> list[Any]:
    """Every policy document the role carries that this stack declares."""
    documents = [policy_document(known(p, "policy")) for p in items(known(role.props, "inlinePolicies"))]
    for role_policy in of_types(resources, ROLE_POLICY_TYPES):
        if any(r is role for r in linked(role_policy, "role", [role])):
            documents.append(policy_document(known(role_policy.props, "policy")))
    managed = of_types(resources, MANAGED_POLICY_TYPES)
    attached = linked_all(role, "managedPolicyArns", managed)
    for attachment in of_types(resources, ROLE_ATTACHMENT_TYPES):
        role_prop, arn_prop = ROLE_ATTACHMENT_PROPS[attachment.resource_type]
        if any(r is role for r in linked_all(attachment, role_prop, [role])):
            attached.extend(linked_all(attachment, arn_prop, managed))
    documents.extend(policy_document(known(p.props, "policy")) for p in attached)
    return documents


def _creates_objects(configuration: Any) -> bool:
    return any(
        isinstance(e, str) and (e.startswith("s3:ObjectCreated:") or e == "s3:*")
        for e in items(known(configuration, "events"))
    )


def _indirect_routes(notification: PolicyResource) -> list[str]:
    """The SNS topics, SQS queues and EventBridge that receive the notification's object-created events."""
    routes = []
    for prop, kind, arn_prop in (("topics", "SNS topic", "topicArn"), ("queues", "SQS queue", "queueArn")):
        for configuration in items(known(notification.props, prop)):
            if _creates_objects(configuration):
                arn = known(configuration, arn_prop)
                routes.append(f"{kind} {arn}" if isinstance(arn, str) else kind)
    if known(notification.props, "eventbridge") is True:
        routes.append("EventBridge")  # which receives every event of the bucket
    return routes


def validate_no_recursion(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    """A function triggered by object creation in a bucket must not be able to create objects there.

    Events sent to a function directly are followed to it. Events sent through SNS, SQS or EventBridge
    are not (their subscribers, pollers and rules are not followed), so then every function of the stack
    that can write into the bucket is reported, as it may be what consumes them.
    """
    buckets = of_types(args.resources, BUCKET_TYPES)
    functions = of_types(args.resources, FUNCTION_TYPES)
    roles = of_types(args.resources, ROLE_TYPES)
    for notification in of_types(args.resources, NOTIFICATION_TYPES):
        routes = _indirect_routes(notification)
        for bucket in linked(notification, "bucket", buckets):
            names = {n for n in (known(bucket.props, "bucket"), known(bucket.props, "id")) if isinstance(n, str)}
            bucket_ids = identifiers(bucket) - {bucket.urn}
            for configuration in items(known(notification.props, "lambdaFunctions")):
                if not _creates_objects(configuration):
                    continue
                arn = known(configuration, "lambdaFunctionArn")
                if isinstance(arn, str):
                    targets = [f for f in functions if _points_at(arn, f)]
                else:  # unknown during preview: the functions the notification's targets came from
                    dependencies = notification.property_dependencies.get("lambdaFunctions", [])
                    targets = [f for f in functions if any(f is d for d in dependencies)]
                for function in targets:
                    reason = _writes_back(function, names, bucket_ids, roles, args.resources)
                    if reason:
                        report_violation(
                            f"{describe(notification)} sends object-created events of {describe(bucket)} to "
                            f"{describe(function)}, which {reason}: every output would re-trigger it",
                            notification.urn,
                        )
            if not routes:
                continue
            for function in functions:
                reason = _writes_back(function, names, bucket_ids, roles, args.resources)
                if reason:
                    report_violation(
                        f"{describe(notification)} sends object-created events of {describe(bucket)} to "
                        f"{', '.join(routes)}, whose consumers this pack does not follow, and {describe(function)} "
                        f"{reason}: if it consumes them, every output re-triggers it",
                        notification.urn,
                    )


def _writes_back(
    function: PolicyResource,
    bucket_names: set[str],
    bucket_ids: set[str],
    roles: Sequence[PolicyResource],
    resources: Sequence[PolicyResource],
) -> str | None:
    for role in linked(function, "role", roles):
        if any(grants_write_to_bucket(d, bucket_names) for d in _role_documents(role, resources)):
            return f"may s3:PutObject into it (role {role.name!r})"
    variables = known(function.props, "environment", "variables")
    if isinstance(variables, Mapping):
        for key in variables:
            value = known(variables, key)
            if isinstance(value, str) and value in bucket_ids:
                return f"is told to use it (environment {key}={value!r})"
    return None


# --- tags (resource) -----------------------------------------------------------------------------


def provider_default_tags(provider: PolicyProviderResource | None) -> Mapping[str, Any] | _Unknown:
    """The provider's `defaultTags.tags`: what AWS adds to every taggable resource it creates."""
    if provider is None:
        return {}
    default_tags = json_or_mapping(known(provider.props, "defaultTags"))
    if default_tags is UNKNOWN:
        return UNKNOWN
    tags = (default_tags or {}).get("tags")
    if tags is UNKNOWN:
        return UNKNOWN
    return tags if isinstance(tags, Mapping) else {}


def validate_required_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Resource tags plus the provider's default tags (and tagsAll when present) must carry each key."""
    if args.resource_type not in TAGGABLE_TYPES:
        return
    required = config_value(args, "requiredTags", list(DEFAULT_REQUIRED_TAGS))
    effective: dict[str, Any] = {}
    for source in (provider_default_tags(args.provider), known(args.props, "tagsAll"), known(args.props, "tags")):
        if source is UNKNOWN:
            return
        if isinstance(source, Mapping):
            effective.update(plain(source))
    if UNKNOWN in effective.values():
        return
    missing = [key for key in required if not effective.get(key)]
    if missing:
        report_violation(
            f"{describe(args)} lacks required tags {missing} (checked its tags and its provider's defaultTags)", None
        )


# --- the pack ------------------------------------------------------------------------------------


def _schema(**properties: dict[str, Any]) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties)


_STRING_LIST = {"type": "array", "items": {"type": "string"}}

POLICIES: list[Policy] = [
    StackValidationPolicy(
        name="s3-bucket-public-access-block",
        description="Every S3 bucket has a BucketPublicAccessBlock with all four flags true.",
        validate=_each_of(BUCKET_TYPES, check_public_access_block),
        severity=Severity.CRITICAL,
        remediation_steps="Add aws.s3.BucketPublicAccessBlock(bucket=bucket.id) with block_public_acls, "
        "block_public_policy, ignore_public_acls and restrict_public_buckets all True.",
    ),
    StackValidationPolicy(
        name="s3-bucket-encryption",
        description="Every S3 bucket has default server-side encryption configured.",
        validate=_each_of(BUCKET_TYPES, check_encryption),
        severity=Severity.HIGH,
        remediation_steps="Add aws.s3.BucketServerSideEncryptionConfiguration with an sse_algorithm "
        "(AES256 or aws:kms).",
    ),
    StackValidationPolicy(
        name="s3-bucket-versioning",
        description="Every S3 bucket has versioning Enabled, so overwritten or deleted objects can be recovered.",
        validate=_each_of(BUCKET_TYPES, check_versioning),
        severity=Severity.MEDIUM,
        remediation_steps="Add aws.s3.BucketVersioning with versioning_configuration status 'Enabled'.",
    ),
    StackValidationPolicy(
        name="s3-bucket-ownership-enforced",
        description="Every S3 bucket has object ownership BucketOwnerEnforced, which disables ACLs.",
        validate=_each_of(BUCKET_TYPES, check_ownership),
        severity=Severity.HIGH,
        remediation_steps="Add aws.s3.BucketOwnershipControls with rule object_ownership 'BucketOwnerEnforced'.",
    ),
    StackValidationPolicy(
        name="s3-bucket-tls-only",
        description="Every S3 bucket has a bucket policy denying requests made without TLS, on that bucket's own "
        "ARN and ARN/*.",
        validate=_each_of(BUCKET_TYPES, check_tls_only),
        severity=Severity.HIGH,
        remediation_steps="Add a BucketPolicy statement: Deny s3:* to Principal '*' on this bucket's ARN and ARN/* "
        "when Bool aws:SecureTransport is 'false'.",
    ),
    ResourceValidationPolicy(
        name="s3-no-public-grants",
        description="No bucket ACL grants public access and no bucket policy allows Principal '*' unconditionally.",
        validate=validate_no_public_grants,
        severity=Severity.CRITICAL,
        remediation_steps="Remove public canned ACLs and AllUsers/AuthenticatedUsers grants; give Principal '*' "
        "statements a condition such as aws:SourceArn, or name the principal.",
    ),
    StackValidationPolicy(
        name="iam-no-wildcards",
        description="IAM policies on roles (inline, RolePolicy, and managed policies attached by managedPolicyArns, "
        "RolePolicyAttachment, PolicyAttachment or RolePolicyAttachmentsExclusive) allow no action with a wildcard "
        "('*', 's3:*', 's3:Put*'), no NotAction or NotResource, and no resource wildcard reaching more than one "
        "named resource; a RolePoliciesExclusive keeps only inline policies this stack declares.",
        validate=validate_no_iam_wildcards,
        severity=Severity.HIGH,
        config_schema=_schema(
            allowedStarResourceActions={
                **_STRING_LIST,
                "description": "Actions AWS only authorizes on Resource '*'; statements made only of these may use it.",
                "default": list(RESOURCE_LEVEL_UNSUPPORTED_ACTIONS),
            },
            allowedManagedPolicyArns={
                **_STRING_LIST,
                "description": "AWS-managed policy ARNs reviewed and accepted despite this rule.",
                "default": [],
            },
        ),
        remediation_steps="Name the exact actions (s3:GetObject, ...) and resource ARNs the function needs; declare "
        "every inline policy a RolePoliciesExclusive keeps as an aws.iam.RolePolicy in this stack.",
    ),
    StackValidationPolicy(
        name="lambda-log-retention",
        description="Every Lambda function has its log group declared with a retention period.",
        validate=_each_of(FUNCTION_TYPES, check_log_retention),
        severity=Severity.MEDIUM,
        remediation_steps="Declare aws.cloudwatch.LogGroup named /aws/lambda/<function name> (or the function's "
        "logging_config.log_group) with retention_in_days.",
    ),
    StackValidationPolicy(
        name="lambda-failure-destination",
        description="Every Lambda function has an on-failure destination or a dead-letter queue.",
        validate=_each_of(FUNCTION_TYPES, check_failure_destination),
        severity=Severity.MEDIUM,
        remediation_steps="Add aws.lambda_.FunctionEventInvokeConfig with destination_config.on_failure, "
        "or set dead_letter_config on the function.",
    ),
    StackValidationPolicy(
        name="lambda-failure-alarm",
        description=f"Every SQS queue a Lambda function sends failed events to has a CloudWatch alarm on its "
        f"{SQS_DEPTH_METRIC} (AWS/SQS, dimension QueueName).",
        validate=_each_of(FUNCTION_TYPES, check_failure_alarm),
        severity=Severity.MEDIUM,
        remediation_steps=f"Add aws.cloudwatch.MetricAlarm on namespace AWS/SQS, metric {SQS_DEPTH_METRIC}, "
        "dimensions {'QueueName': queue.name}, threshold 0, GreaterThanThreshold, with alarm_actions to notify.",
    ),
    ResourceValidationPolicy(
        name="lambda-timeout",
        description="Every Lambda function's timeout is at most 900 seconds (the Lambda maximum).",
        validate=validate_timeout,
        severity=Severity.LOW,
        config_schema=_schema(
            maximumTimeoutSeconds={"type": "integer", "minimum": 1, "maximum": 900, "default": 900},
        ),
    ),
    ResourceValidationPolicy(
        name="lambda-runtime-architecture",
        description="Every Lambda function uses a supported (non-deprecated) runtime and architecture.",
        validate=validate_runtime_and_architecture,
        severity=Severity.MEDIUM,
        config_schema=_schema(
            allowedRuntimes={**_STRING_LIST, "default": list(DEFAULT_ALLOWED_RUNTIMES)},
            allowedArchitectures={**_STRING_LIST, "default": list(DEFAULT_ALLOWED_ARCHITECTURES)},
        ),
    ),
    StackValidationPolicy(
        name="lambda-layer-compatibility",
        description="Every layer a Lambda function uses lists the function's runtime and architecture as compatible.",
        validate=_each_of(FUNCTION_TYPES, check_layer_compatibility),
        severity=Severity.HIGH,
        remediation_steps="Build the layer for the function's runtime and architecture (python -m layer_build "
        "--runtime ... --arch ...) and declare them in compatible_runtimes/compatible_architectures.",
    ),
    ResourceValidationPolicy(
        name="lambda-permission-source",
        description="No lambda.Permission has principal '*'; one for a service principal sets sourceArn (and "
        "sourceAccount for S3), one for any other principal sets sourceArn or principalOrgId; no FunctionUrl has "
        "authorizationType NONE.",
        validate=validate_permission_source,
        severity=Severity.HIGH,
        remediation_steps="Grant a service principal with source_arn=bucket.arn and source_account=<account id>; "
        "give an account principal source_arn or principal_org_id; use authorization_type 'AWS_IAM' on function URLs.",
    ),
    StackValidationPolicy(
        name="s3-notification-no-recursion",
        description="No bucket notification sends object-created events to a function of this stack that can write "
        "into that bucket, nor through SNS, SQS or EventBridge (whose consumers are not followed) while any function "
        "of this stack can write into it.",
        validate=validate_no_recursion,
        severity=Severity.CRITICAL,
        remediation_steps="Write outputs to another bucket, and grant s3:PutObject only on that bucket.",
    ),
    ResourceValidationPolicy(
        name="required-tags",
        description="Every taggable resource carries the required tags (own tags or the provider's defaultTags).",
        validate=validate_required_tags,
        severity=Severity.LOW,
        config_schema=_schema(
            requiredTags={**_STRING_LIST, "default": list(DEFAULT_REQUIRED_TAGS)},
        ),
    ),
]
