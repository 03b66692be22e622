"""`python -m local run`: deploy the real program into the embedded emulator and push photos through it.

One command for a newcomer: start the emulator, deploy the stack, upload every file of a folder,
wait for the function, print one progress line per upload and a results table, download the
variants into `--out`, exit 0 only if every upload was handled. `--serve` then keeps the emulator
up for more uploads with the AWS CLI until Ctrl-C.
"""

from __future__ import annotations

import argparse
import io
import logging
import mimetypes
import os
import posixpath
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from urllib.parse import unquote

from PIL import Image

from components.config import ConfigError
from local.deployer import DeployError, deploy, stack_region
from local.emulator import Emulator
from local.lambda_service import Invocation, LambdaService
from local.program import PROJECT_DIR, ProgramRun, UnknownConfigKeyError, check_config_key, stack_names

DEFAULT_PHOTOS = PROJECT_DIR.parent / "shared" / "testdata" / "photos"
POLL_S = 0.5
EMULATED_PROVIDER_KEYS = ("aws:region",)
"""The one `aws:*` key `-c` may set: the emulator serves that region. Other provider settings
(`aws:profile`, ...) mean nothing to the emulator's provider, so they are refused like typos."""
USAGE_ERROR = 2
"""Exit status for a bad argument or config value, the one argparse itself uses."""


class UsageError(Exception):
    """A bad argument or config value: reported as one line on stderr, exit status USAGE_ERROR."""


@dataclass
class OutputFile:
    key: str
    size: int
    content_type: str
    dimensions: str


@dataclass
class UploadResult:
    """What became of one uploaded file."""

    key: str
    size: int
    invocation: Invocation | None = None
    outputs: list[OutputFile] = field(default_factory=list)
    quarantine_reason: str | None = None
    quarantine_detail: str = ""
    not_uploaded: str | None = None
    """Why the file was not uploaded (its key would not trigger the function)."""

    @property
    def ok(self) -> bool:
        return self.not_uploaded is not None or (
            self.invocation is not None
            and self.invocation.status == "succeeded"
            and (bool(self.outputs) or self.quarantine_reason is not None)
        )

    @property
    def duration_ms(self) -> float:
        return self.invocation.attempts[-1].duration_ms if self.invocation and self.invocation.attempts else 0.0

    def summary(self) -> str:
        if self.not_uploaded is not None:
            return f"not uploaded: {self.not_uploaded}"
        if self.invocation is None or self.invocation.status in ("queued", "running"):
            return "not processed in time"
        if self.invocation.status == "failed":
            error = self.invocation.attempts[-1].error or {}
            if self.invocation.destination_error:
                where = f"LOST ({self.invocation.destination_error})"
            elif self.invocation.delivered_to:
                where = "event sent to " + ", ".join(arn.rsplit(":", 1)[-1] for arn in self.invocation.delivered_to)
            else:
                where = "event discarded (no failure destination)"
            return (
                f"FAILED after {len(self.invocation.attempts)} attempts, {where}: "
                f"{error.get('errorType')}: {error.get('errorMessage')}"
            )
        if self.quarantine_reason is not None:
            detail = f" ({self.quarantine_detail})" if self.quarantine_detail else ""
            return f"quarantined: {self.quarantine_reason}{detail}"
        if not self.outputs:
            return "FAILED: the function succeeded but wrote no variants"
        return f"{len(self.outputs)} variants in {self.duration_ms:.0f} ms"


def _write(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _dimensions(data: bytes) -> str:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return f"{image.width}x{image.height}"
    except (OSError, Image.DecompressionBombError) as exc:
        return f"unreadable ({type(exc).__name__})"


def _without_extension(key: str) -> str:
    return posixpath.splitext(key)[0]


def is_output_of(output_key: str, source_key: str) -> bool:
    """Variants are written as `<variant>/<source key without extension>.<ext>`."""
    variant_path = output_key.partition("/")[2]
    return bool(variant_path) and _without_extension(variant_path) == _without_extension(source_key)


class Session:
    """A deployed stack in a running emulator, with the bookkeeping of uploads and results."""

    def __init__(self, emulator: Emulator, lambda_service: LambdaService, run: ProgramRun, out_dir: Path) -> None:
        self.emulator = emulator
        self.lambda_service = lambda_service
        self.run = run
        self.out_dir = out_dir
        self.s3 = emulator.client("s3")
        self.upload_bucket: str = run.outputs["upload_bucket"]
        self.processed_bucket: str = run.outputs["processed_bucket"]
        self.quarantine_bucket: str = run.outputs["quarantine_location"].removeprefix("s3://").rstrip("/")
        triggers = [
            trigger
            for notification in run.of_type("aws:s3/bucketNotification:BucketNotification")
            if notification.inputs["bucket"] == self.upload_bucket
            for trigger in notification.inputs.get("lambdaFunctions") or []
        ]
        if len(triggers) != 1:
            raise RuntimeError(f"expected one Lambda trigger on {self.upload_bucket}, the program declared {triggers}")
        self.trigger_prefix: str = triggers[0].get("filterPrefix") or ""
        self.trigger_suffix: str = triggers[0].get("filterSuffix") or ""

    def key_for(self, path: Path) -> str | None:
        """The upload key for a file (under the trigger's prefix); None if the trigger would ignore it."""
        key = self.trigger_prefix + path.name
        return key if key.endswith(self.trigger_suffix) else None

    def upload(self, path: Path, key: str) -> UploadResult:
        data = path.read_bytes()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.s3.put_object(Bucket=self.upload_bucket, Key=key, Body=data, ContentType=content_type)
        return UploadResult(key=key, size=len(data))

    def invocation_for(self, key: str) -> Invocation | None:
        matches = [i for i in self.lambda_service.invocations() if (self.upload_bucket, key) in i.objects]
        return matches[-1] if matches else None

    def collect(self, result: UploadResult) -> None:
        """Find, download and describe the variants (or the quarantined copy) of one upload."""
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.processed_bucket):
            for item in page.get("Contents", []):
                key = item["Key"]
                if not is_output_of(key, result.key):
                    continue
                response = self.s3.get_object(Bucket=self.processed_bucket, Key=key)
                data = response["Body"].read()
                target = self.out_dir / key
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                result.outputs.append(OutputFile(key, len(data), response.get("ContentType", ""), _dimensions(data)))
        result.outputs.sort(key=lambda output: output.key)
        try:
            quarantined = self.s3.head_object(Bucket=self.quarantine_bucket, Key=result.key)
        except self.s3.exceptions.ClientError as exc:
            if exc.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                raise
            return
        metadata = quarantined.get("Metadata", {})
        result.quarantine_reason = metadata.get("reason") or "(no reason in its metadata)"
        result.quarantine_detail = unquote(metadata.get("detail", ""))

    def wait(self, results: list[UploadResult], timeout_s: float, *, on_done: Callable[[UploadResult], None]) -> None:
        """Poll until every upload's invocation has finished (bounded by `timeout_s`)."""
        for result in results:
            if result.not_uploaded is not None:
                on_done(result)
        pending = [result for result in results if result.not_uploaded is None]
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for result in list(pending):
                invocation = self.invocation_for(result.key)
                if invocation is not None and invocation.status in ("succeeded", "failed"):
                    result.invocation = invocation
                    self.collect(result)
                    pending.remove(result)
                    on_done(result)
            if pending:
                time.sleep(POLL_S)
        for result in pending:
            result.invocation = self.invocation_for(result.key)
            on_done(result)


def print_table(results: list[UploadResult]) -> None:
    rows = [("source", "variant", "dimensions", "bytes", "ms")]
    for result in results:
        if result.outputs:
            for output in result.outputs:
                rows.append(
                    (
                        result.key,
                        f"-> {output.key} ({output.content_type})",
                        output.dimensions,
                        f"{output.size:,}",
                        f"{result.duration_ms:.0f}",
                    )
                )
        else:
            rows.append((result.key, f"-> {result.summary()}", "", "", f"{result.duration_ms:.0f}"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column < 3 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        _write("  ".join(cells).rstrip())
        if index == 0:
            _write("  ".join("-" * width for width in widths))


def _photos(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UsageError(f"photos folder {folder} does not exist")
    photos = sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))
    if not photos:
        raise UsageError(f"no files to upload in {folder}")
    return photos


def _serve_instructions(session: Session) -> None:
    emulator = session.emulator
    assert emulator.admin is not None
    _write()
    _write(f"Emulator running at {emulator.endpoint} (TLS, IAM enforced). Upload more from another shell:")
    _write(f"  export AWS_ACCESS_KEY_ID={emulator.admin.access_key_id}")
    _write(f"  export AWS_SECRET_ACCESS_KEY={emulator.admin.secret_access_key}")
    _write(f"  export AWS_DEFAULT_REGION={emulator.region}")
    command = session.run.outputs["upload_command"]  # the stack's own export, pointed at the emulator
    if not command.startswith("aws s3 cp "):
        raise RuntimeError(f"unexpected upload_command export {command!r}")
    emulator_options = f"--endpoint-url {emulator.endpoint} --ca-bundle {emulator.ca_bundle}"
    _write("  " + command.replace("aws ", f"aws {emulator_options} ", 1))
    _write(f"Results are downloaded into {session.out_dir}/. Ctrl-C stops the emulator.")


def _serve(session: Session, seen: set[str]) -> None:
    """Report the uploads made by others (the AWS CLI) as they are processed, until Ctrl-C."""
    while True:
        for invocation in session.lambda_service.invocations():
            if invocation.request_id in seen or invocation.status not in ("succeeded", "failed"):
                continue
            seen.add(invocation.request_id)
            for bucket, key in invocation.objects:
                if bucket != session.upload_bucket:
                    continue
                result = UploadResult(key=key, size=0, invocation=invocation)
                session.collect(result)
                _write(f"{key}: {result.summary()}")
        time.sleep(POLL_S)


OUT_MARKER = ".image-pipeline-out"


def _fresh_out_dir(out_dir: Path) -> Path:
    """Empty `out_dir` for this run, but only if a previous run made it: never wipe a user's folder."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / OUT_MARKER).is_file():
            raise UsageError(f"{out_dir} is not empty and was not made by this command; choose another --out")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / OUT_MARKER).write_text("Variants downloaded by `python -m local run`; replaced on the next run.\n")
    return out_dir


def _upload(session: Session, path: Path) -> UploadResult:
    key = session.key_for(path)
    if key is None:
        reason = f"the function only runs for keys ending in {session.trigger_suffix!r}"
        return UploadResult(key=path.name, size=path.stat().st_size, not_uploaded=reason)
    return session.upload(path, key)


def _config_override(text: str) -> tuple[str, str]:
    """(qualified key, value); a key the program never reads is refused, or a typo would deploy the default."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return check_config_key(key, also=EMULATED_PROVIDER_KEYS), value
    except UnknownConfigKeyError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    """`--concurrency`: refused here, not by LambdaService after the emulator started."""
    refusal = argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    try:
        value = int(text)
    except ValueError:
        raise refusal from None
    if value < 1:
        raise refusal
    return value


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    photos = _photos(args.photos)
    out_dir = _fresh_out_dir(args.out)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    overrides = dict(args.config)
    try:
        region = stack_region(args.stack, config_overrides=overrides)
    except DeployError as error:
        raise UsageError(str(error)) from None
    try:
        with Emulator(region) as emulator, LambdaService(emulator, concurrency=args.concurrency) as lambda_service:
            started = time.perf_counter()
            program_run = deploy(args.stack, emulator, lambda_service, config_overrides=overrides)
            custom = [r for r in program_run.resources if r.custom and not r.type.startswith("pulumi:providers:")]
            _write(
                f"Deployed stack {args.stack!r} into the emulator at {emulator.endpoint}: "
                f"{len(custom)} resources in {time.perf_counter() - started:.1f} s"
            )
            session = Session(emulator, lambda_service, program_run, out_dir)
            _write(
                f"Uploading {len(photos)} files from {args.photos} "
                f"to s3://{session.upload_bucket}/{session.trigger_prefix}"
            )
            results = [_upload(session, path) for path in photos]
            done = 0

            def progress(result: UploadResult) -> None:
                nonlocal done
                done += 1
                _write(f"[{done}/{len(results)}] {result.key} ({result.size:,} bytes): {result.summary()}")

            session.wait(results, args.timeout, on_done=progress)
            _write()
            print_table(results)
            failed = [result for result in results if not result.ok]
            quarantined = [result for result in results if result.quarantine_reason is not None]
            _write()
            _write(
                f"{len(results) - len(failed)} of {len(results)} uploads handled "
                f"({len(quarantined)} quarantined), {len(failed)} failed; variants in {out_dir}/"
            )
            status = 1 if failed else 0
            if args.serve:
                _serve_instructions(session)
                try:
                    _serve(session, {r.invocation.request_id for r in results if r.invocation})
                except KeyboardInterrupt:
                    _write("Stopping the emulator.")
            return status
    except KeyboardInterrupt:
        _write("Interrupted; the emulator is stopped.")
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser(
        "run",
        help="deploy into the emulator, upload photos, print the results",
        epilog=(
            "Exit status: 0 when every upload was handled (quarantined counts), 1 when one failed or was "
            f"not processed within --timeout, {USAGE_ERROR} for a bad argument or config value, 130 when interrupted."
        ),
    )
    run_parser.add_argument(
        "--stack", default="dev", choices=stack_names(), help="stack whose Pulumi.<stack>.yaml to deploy (default dev)"
    )
    run_parser.add_argument(
        "--photos", type=Path, default=DEFAULT_PHOTOS, help=f"folder of files to upload (default {DEFAULT_PHOTOS})"
    )
    run_parser.add_argument(
        "-c",
        "--config",
        type=_config_override,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a stack config value (a key Pulumi.yaml declares, or aws:region), e.g. -c variants=responsive",
    )
    run_parser.add_argument("--out", type=Path, default=Path("out"), help="where variants are downloaded (./out)")
    run_parser.add_argument("--serve", action="store_true", help="keep the emulator running for more uploads")
    run_parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the function")
    run_parser.add_argument("--concurrency", type=_positive_int, default=2, help="concurrent function containers (2)")
    run_parser.add_argument("-v", "--verbose", action="store_true", help="show the emulator's and function's logs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return run(args)
    except (UsageError, ConfigError) as error:  # ConfigError: the program refused a value (stack file or -c)
        sys.stderr.write(f"python -m local {args.command}: error: {error}\n")
        return USAGE_ERROR
    except BrokenPipeError:  # e.g. piped into `head`: the emulator is already stopped, just go quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
