"""The image pipeline: upload bytes + variant specs -> rendered variants. Pure: no AWS.

Order of work, chosen so every pixel is touched as few times as possible:

1. refuse oversized bytes, sniff the container, open the header with an allowlist
   of decoders only, and refuse too many pixels and a container cut short (even
   after the frame we render: its chunks, blocks, pages or declared images are
   walked, never its pixels) before anything is decoded;
2. plan every variant's size in the stored pixel grid, and let JPEG decode at
   1/2, 1/4 or 1/8 scale (`draft`) when that still leaves every variant
   `_DRAFT_HEADROOM` times the pixels it needs;
3. decode once, convert to 8-bit sRGB once: on the decoded frame, or, when no
   variant is full size and an ICC profile must be applied, on each frame
   resampled from it (a profile transform costs ~15 ms per megapixel, split
   in bands across the thread pool for large frames);
4. resample largest variants first, each from the smallest already-made
   full-frame intermediate that is at least twice its size (or from the decoded
   frame), with `reducing_gap` so the expensive filter runs on few pixels;
5. apply the orientation to the small results (a full-size variant has the decoded frame turned once,
   before step 3, so no second full-size frame is held), flatten alpha where the codec needs it;
6. encode on the thread pool (Pillow's codecs release the GIL), slowest first.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import re
import struct
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from PIL import (
    ExifTags,
    Image,
    ImageChops,
    ImageMath,
    ImagePalette,
    PngImagePlugin,
    TiffImagePlugin,
    UnidentifiedImageError,
)

from handler import av1, bmp, sniff
from handler.colour import to_srgb, to_working_mode
from handler.encode import encode_variant, prepare_for_format, save_prepared
from handler.geometry import EXIF_ERRORS, TRANSPOSE_FOR_ORIENTATION, Plan, output_size, plan_variant, read_orientation
from handler.variants import VariantSpec

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_PIXEL_LIMIT",
    "REASONS",
    "Rejected",
    "RenderedVariant",
    "default_workers",
    "encode_variant",
    "render",
    "render_memory_mb",
]

LOG = logging.getLogger(__name__)

DEFAULT_PIXEL_LIMIT = 89_478_485
"""Pillow's own default warning threshold (a 9459x9459 frame, ~268 MB as RGB + decode buffers)."""
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""50 MiB: above any camera JPEG/HEIC/RAW-free upload, and small enough to hold in a 1 GB function."""
MAX_PIXEL_LIMIT = 2 * DEFAULT_PIXEL_LIMIT
"""Pillow refuses to open larger frames at all (DecompressionBombError), whatever we configure."""

LAMBDA_MB_PER_VCPU = 1769
"""Lambda grants the equivalent of one vCPU at 1769 MB of memory, proportionally below and above."""

RENDER_BYTES_PER_PIXEL = 24
"""Peak memory of `render` per pixel of the upload with one thread and the default preset. Measured at the
default pixel limit on the hungriest kinds: RGBA with a natural alpha ramp (22.6, nearly all of it libwebp
encoding the full-size WebP: its lossless alpha coder alone takes ~13 bytes a pixel, more on pure-noise alpha),
RGBA with an ICC profile (19.8), 16-bit grey with tRNS (17.7); an RGB JPEG needs about half."""
RENDER_BYTES_PER_PIXEL_PER_EXTRA_THREAD = 8
"""Each further thread holds another frame being encoded (RGBA with ICC on two threads: 26.3 in all)."""
RUNTIME_OVERHEAD_MB = 128
"""The Python runtime, boto3 and Pillow before the first image, with headroom."""


def render_memory_mb(pixels: int, threads: int, upload_bytes: int) -> int:
    """Peak memory to render a frame of `pixels` on `threads` threads, with the upload held twice while read."""
    per_pixel = RENDER_BYTES_PER_PIXEL + RENDER_BYTES_PER_PIXEL_PER_EXTRA_THREAD * (threads - 1)
    return math.ceil((pixels * per_pixel + 2 * upload_bytes) / 2**20) + RUNTIME_OVERHEAD_MB


REASONS = ("unsupported_format", "not_an_image", "corrupt", "too_many_pixels", "too_complex", "too_large")

# Intermediates are reused as resampling sources only when at least this much
# larger than the target, so the second resampling cannot soften the result.
_MIN_REUSE_RATIO = 2.0
# libjpeg's DCT scaling is a cruder filter than Lanczos: measured on the shared photos, a
# shrink-on-load that leaves the largest variant only a 1.07-1.14x margin costs it 2-4 dB
# PSNR against a full-resolution Lanczos, a 1.5x margin costs nothing measurable. (Pillow's
# own thumbnail() keeps 2x; 1.5x keeps the 12 MP photo's 1/2-scale decode for 1200 px.)
_DRAFT_HEADROOM = 1.5
_REDUCING_GAP = 3.0
# Resizes to at least this many pixels are split into bands across the encoder threads.
_MIN_BANDED_PIXELS = 250_000
_RESIZE_BANDS = 2
_RESAMPLE = Image.Resampling.LANCZOS
# Relative encode cost per pixel, to start the slowest encodes first.
_CODEC_COST = {"avif": 8, "png": 4, "webp": 4, "jpeg": 1}
# Exceptions Pillow's decoders raise on damaged data (libavif's failures surface as RuntimeError).
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    TypeError,
    KeyError,
    RuntimeError,
)

_LIBTIFF_COMPRESSION = 8
"""Deflate: a compression Pillow leaves to libtiff, to have it set up a TIFF for libtiff (which reads the real one)."""
_PLANAR_MODES_PILLOW_READS = frozenset({"RGB", "RGBA", "CMYK"})
"""Modes of uncompressed TIFFs in separate planes that Pillow's raw decoder reads right, with 8-bit samples."""
_PLANAR_MODES_MISREAD = frozenset({"LA", "La", "LAB"})
"""Modes of TIFFs in separate planes that libtiff's planar reader, as Pillow uses it, gets wrong (Pillow's own too)."""
_LIBTIFF_NATIVE_RAWMODES = {"I;16BS": "I;16NS", "I;32BS": "I;32NS", "F;32BF": "F;32NF"}
"""Raw modes Pillow gives big-endian signed and float TIFF samples, and the native-order ones libtiff hands them over
in (Pillow translates only unsigned 16-bit samples itself)."""
_BIG_ENDIAN_BIGTIFF = b"MM\x00+"
"""Pillow tells BigTIFF from classic TIFF by the header's third byte, which is 0 in big-endian files."""
# TIFF tags that tell a camera raw: DNGVersion; NewSubfileType, whose bit 0 flags a reduced-resolution image; SubIFDs.
_DNG_VERSION = 50706
_NEW_SUBFILE_TYPE = 254
_REDUCED_RESOLUTION = 1
_SUB_IFDS = 330
_UNWRITTEN = 0x5A
"""What a PNG's last row holds before decoding, to tell whether the decoder reached it (its samples: 90 each)."""
_INFLATE_STEP = 1 << 20
"""Bytes inflated at a time when a PNG's zlib stream is counted."""

_heif_lock = threading.Lock()
_heif_registered = False


class Rejected(Exception):  # noqa: N818 - the name is the public API the bench and layer test import
    """The upload is not something we render; permanent, so quarantine rather than retry."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"rejection reason must be one of {', '.join(REASONS)}, got {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RenderedVariant:
    """One encoded output, ready to store."""

    name: str
    format: str
    data: bytes
    width: int
    height: int
    content_type: str
    extension: str


def default_workers() -> int:
    """Threads worth running: the CPUs we may use, capped in Lambda by the memory-based CPU share.

    Lambda's guest always shows 2 vCPUs but grants about one per 1769 MB of memory
    (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`, set by the Lambda runtime); more threads than
    that only hold more encoder buffers at once.
    """
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cpus = max(1, os.cpu_count() or 1)
    memory = _function_memory_mb()
    if memory is None:
        return cpus
    return min(cpus, math.ceil(memory / LAMBDA_MB_PER_VCPU))


def _function_memory_mb() -> int | None:
    """The function's memory in Lambda (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`); None elsewhere."""
    memory = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
    if memory is None:
        return None
    if not memory.isdigit() or int(memory) < 1:
        raise ValueError(f"AWS_LAMBDA_FUNCTION_MEMORY_SIZE must be a positive integer (MB), got {memory!r}")
    return int(memory)


def _threads_that_fit(workers: int, pixels: int, upload_bytes: int) -> int:
    """Fewer threads for a frame too large to render on all of them within the function's memory.

    Each thread holds a frame being encoded; the stack's config only guarantees one thread fits at the pixel
    limit, and running out of memory would get the upload killed, retried and dead-lettered.
    """
    memory = _function_memory_mb()
    if memory is None:
        return workers
    threads = workers
    while threads > 1 and render_memory_mb(pixels, threads, upload_bytes) > memory:
        threads -= 1
    if threads < workers:
        LOG.info("%d pixels: rendering on %d of %d threads to stay within %d MB", pixels, threads, workers, memory)
    return threads


def _ensure_heif_plugin() -> None:
    """Register pi-heif's opener on first HEIF upload only: its import costs cold-start time."""
    global _heif_registered  # noqa: PLW0603 - one-time plugin registration, guarded by the lock
    with _heif_lock:
        if not _heif_registered:
            import pi_heif  # noqa: PLC0415 - lazy: only HEIF uploads pay for it

            pi_heif.register_heif_opener()
            _heif_registered = True


def _header_error(container: str, error: BaseException, data: bytes) -> Rejected:
    """`corrupt`, with the decoder's own words: a valid layout it has no decoder for (a TIFF's CMYK with alpha,
    "unknown pixel mode") reads exactly like damage (a bit flip in BitsPerSample), so only the words tell.
    A BMP's header can tell, though: `unsupported_format` naming a valid layout no decoder here reads. A PNG's IHDR
    field the spec does not allow is named with its value instead of Pillow's words, which name nothing."""
    # A KeyError is a lookup of a code the decoder does not know (a TIFF compression, say): its str is the bare key.
    # Pillow's TIFF plugin wraps it in a SyntaxError.
    cause = error.args[0] if error.args and isinstance(error.args[0], BaseException) else error
    message = f"unknown code {cause.args[0]!r}" if isinstance(cause, KeyError) and cause.args else str(cause)
    if container == "BMP":
        unsupported = _bmp_layout_unsupported(data)
        if unsupported is not None:
            return unsupported
    if container == "PNG":
        message = sniff.png_header_problem(data) or message
    return Rejected("corrupt", f"{container} header cannot be parsed: {message or type(error).__name__}")


def _other_pillow_format(data: bytes) -> str | None:
    """The format of a Pillow plugin we do not let decode whose parser reads this header (PCX, PPM, TGA, SGI...).

    Such a file is an image in a format we refuse, not "no image": most of these have no signature worth the
    name, so their own header parser is the test. It reads the header only; no pixel is decoded, and any error
    means "not this format". All plugins are registered here, on the refusal path, not at import.
    """
    Image.init()
    refused = [name for name in Image.OPEN if name not in sniff.ALLOWED_PILLOW_FORMATS and name != "MPO"]
    prefix = data[:16]  # what Image.open shows a plugin's accept()
    for name in refused:
        factory, accept = Image.OPEN[name]
        try:
            accepted = accept is None or accept(prefix)
            if not accepted or isinstance(accepted, str):  # a string says "mine, but unreadable here": a no, as open
                continue
            factory(io.BytesIO(data), None).close()
        except Exception:  # a parser's failure, of whatever kind, only says "not this format"
            continue
        return name
    return None


def _classify_unidentified(data: bytes) -> Rejected:
    container = sniff.accepted_container(data)
    if container is not None:
        # Image.open keeps its plugins' reasons to itself: ask the container's own plugin for it.
        factory = Image.OPEN.get(container, (None,))[0]
        try:
            if factory is not None:
                factory(io.BytesIO(data), None).close()
        except _DECODE_ERRORS as exc:
            return _header_error(container, exc, data)
        return Rejected("corrupt", f"{container} signature but the header cannot be parsed")
    other = sniff.other_image_format(data) or _other_pillow_format(data)
    if other is not None:
        accepted = ", ".join(sniff.ALLOWED_PILLOW_FORMATS)
        return Rejected("unsupported_format", f"{other} is not accepted; accepted: {accepted}")
    return Rejected("not_an_image", f"content is not a recognised image (starts with {data[:8]!r})")


def _refuse_over_limit(size: tuple[int, int] | None, pixel_limit: int, source: str) -> None:
    if size is not None and size[0] * size[1] > pixel_limit:
        width, height = size
        raise Rejected(
            "too_many_pixels", f"{source} {width}x{height} = {width * height} pixels, exceeds the limit {pixel_limit}"
        )


def _open(data: bytes, pixel_limit: int) -> Image.Image:
    """Parse only the header, with the allowlisted decoders; enforce the pixel limit and a whole container."""
    if not data:
        raise Rejected("not_an_image", "empty upload (0 bytes)")
    if data[:4] == _BIG_ENDIAN_BIGTIFF:
        raise Rejected(
            "unsupported_format",
            "big-endian BigTIFF: Pillow reads its header as a classic TIFF's, so it would not decode the directory "
            "the checks here read",
        )
    _refuse_over_limit(sniff.declared_size(data), pixel_limit, "header declares")
    excess = sniff.excess_structure(data)
    if excess is not None:
        raise Rejected("too_complex", excess)
    # libavif decodes the coded AV1 frame, whatever size `ispe` (which the limit above read) claims.
    conflict, coded = av1.check_frames(data)
    if conflict is not None:
        raise Rejected("corrupt", conflict)
    _refuse_over_limit(coded, pixel_limit, "the AV1 frame is")
    if sniff.accepted_container(data) is None:  # Pillow's plugins guess from two bytes: text may start "BM"
        raise _classify_unidentified(data)
    coding = sniff.unsupported_coding(data)
    if coding is not None:
        raise Rejected("unsupported_format", coding)
    if bmp.decoded_here(data):  # Pillow would open it, then fail on its pixels or decode them otherwise
        return _open_bmp(data, pixel_limit)
    heif = sniff.is_heif_container(data)
    if heif:
        _ensure_heif_plugin()
    formats = [name for name in sniff.ALLOWED_PILLOW_FORMATS if heif or name != "HEIF"]
    readable = sniff.readable_by_pillow(data)  # what it skips, such as a JPEG's profile, is read from `data`
    try:
        image = Image.open(io.BytesIO(readable), formats=formats)
    except Image.DecompressionBombError as exc:  # not an OSError: caught explicitly
        # Pillow's words name its own hard limit (twice MAX_IMAGE_PIXELS); the user's is `pixel_limit`.
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{declared[1]} pixels" if declared else "a frame Pillow refuses to open"
        raise Rejected("too_many_pixels", f"header declares {pixels}, exceeds the limit {pixel_limit}") from None
    except UnidentifiedImageError:
        raise _classify_unidentified(readable) from None
    except _DECODE_ERRORS as exc:
        container = sniff.accepted_container(data) or "image"
        if container == "BMP" and bmp.layout(data) is not None:
            return _open_bmp(data, pixel_limit)
        raise _header_error(container, exc, data) from None
    _refuse_over_limit(image.size, pixel_limit, "the frame is")
    width, height = image.size
    if width < 1 or height < 1:
        raise Rejected("corrupt", f"header declares an empty frame {width}x{height}")
    missing = sniff.truncation(data) or sniff.png_damage(data)
    if missing is not None:
        raise Rejected("corrupt", missing)
    raw = _camera_raw(image, data) if isinstance(image, TiffImagePlugin.TiffImageFile) else None
    if raw is not None:
        raise Rejected("unsupported_format", raw)
    # Pillow's own raw decoder is the only one that yields YCbCr: libtiff's give RGB.
    if isinstance(image, TiffImagePlugin.TiffImageFile) and image.mode == "YCbCr" and _ycbcr_needs_libtiff(image):
        _decode_with_libtiff(image)
    return image


def _camera_raw(image: TiffImagePlugin.TiffImageFile, data: bytes) -> str | None:
    """What camera raw a TIFF container holds, or None for a plain TIFF.

    Pillow decodes a TIFF's first directory, which in a raw is the camera's preview or thumbnail, not the photo:
    the sensor data (which no decoder here develops) lies in a SubIFD or a later directory. Rendering the preview
    would pass a thumbnail off as the upload.
    """
    tags = image.tag_v2
    if _DNG_VERSION in tags:
        return "DNG camera raw: the sensor data needs a raw developer; upload a JPEG, HEIC or TIFF export"
    if data[8:11] == b"CR\x02":
        return "Canon CR2 camera raw: the sensor data needs a raw developer; upload a JPEG, HEIC or TIFF export"
    if tags.get(_NEW_SUBFILE_TYPE, 0) & _REDUCED_RESOLUTION and _SUB_IFDS in tags:
        return (
            "TIFF whose first image is a reduced-resolution preview of one in a SubIFD (a camera raw such as NEF, "
            "ARW or PEF): only the first image is decoded here"
        )
    return None


def _open_bmp(data: bytes, pixel_limit: int) -> Image.Image:
    """A BMP in a layout Pillow has no decoder for, or decodes otherwise than Chromium (RLE), decoded by
    `handler.bmp` after the checks `_open` makes of a frame Pillow opens: the pixel limit, a frame that is not
    empty, a whole file.

    Decoded here rather than in `_decode`: no Pillow plugin holds its header meanwhile.
    """
    info = sniff.bmp_info(data)
    width, height = (info.width, abs(info.height)) if info is not None else (0, 0)
    _refuse_over_limit((width, height), pixel_limit, "header declares")
    if width < 1 or height < 1:
        raise Rejected("corrupt", f"header declares an empty frame {width}x{height}")
    missing = sniff.truncation(data)
    if missing is not None:
        raise Rejected("corrupt", missing)
    try:
        return bmp.decode(data)
    except _DECODE_ERRORS as exc:
        raise Rejected("corrupt", f"pixel data cannot be decoded: {exc}") from None


def _ycbcr_needs_libtiff(image: TiffImagePlugin.TiffImageFile) -> bool:
    """Whether an uncompressed YCbCr TIFF must be decoded by libtiff: Pillow's raw decoder gives every pixel its
    own Cb and Cr and ignores ReferenceBlackWhite and YCbCrCoefficients, so subsampled chroma (2x2, 2x1) comes
    out as colour garbage or a strip too short, and studio-range samples washed out. libtiff's RGBA reader
    applies all three.

    Without a YCbCrSubSampling tag, libtiff takes the TIFF default, 2x2. Pillow before 8.4 wrote neither that tag
    nor subsampled chroma: a first strip (or tile) long enough for a Cb and Cr beside every Y is such a file,
    which Pillow's own decoder reads right.
    """
    tags, tiff = image.tag_v2, TiffImagePlugin
    if tiff.YCBCRSUBSAMPLING in tags:
        return True
    # Pillow's header parse has checked that the sizes and RowsPerStrip are numbers; the byte counts it does not read.
    if tiff.STRIPOFFSETS in tags:  # strips win over tiles, as there
        counts, width, height = tags.get(tiff.STRIPBYTECOUNTS), tags[tiff.IMAGEWIDTH], tags[tiff.IMAGELENGTH]
        rows = min(tags.get(tiff.ROWSPERSTRIP, height), height)
    else:
        counts, width, rows = tags.get(tiff.TILEBYTECOUNTS), tags[tiff.TILEWIDTH], tags[tiff.TILELENGTH]
    first = counts[0] if isinstance(counts, tuple) and counts else None
    return isinstance(first, int) and first < width * rows * 3


def _decode_with_libtiff(image: TiffImagePlugin.TiffImageFile) -> None:
    """Set up the tile and mode Pillow's TIFF plugin gives the same TIFF compressed, which libtiff decodes (a YCbCr
    one to RGB).

    `TiffImagePlugin.READ_LIBTIFF` would do it too, for every TIFF any thread opens meanwhile.
    """
    _set_up_as(image, TiffImagePlugin.COMPRESSION, _LIBTIFF_COMPRESSION)
    image.info["compression"] = "raw"


def _set_up_as(image: TiffImagePlugin.TiffImageFile, tag: int, value: int) -> None:
    """Have Pillow's TIFF plugin set up the tiles and mode it gives the same file with `tag` set to `value`.

    Only Pillow reads the tag from here: libtiff reads the file's own tags.
    """
    tags = image.tag_v2
    saved = tags.get(tag)
    tags[tag] = value
    try:
        image._setup()
    finally:
        if saved is None:
            del tags[tag]
        else:
            tags[tag] = saved


def _colour_profile(image: Image.Image, data: bytes) -> tuple[bytes | None, bool]:
    """The ICC profile the decoded pixels are in (None: sRGB), and whether it was built here (an RGB profile
    from H.273 code points or a PNG's gAMA).

    Code points win over an embedded profile only where the container says so (PNG's cICP); AVIF and HEIF
    report them only for images without one. A JPEG's profile is assembled from its chunks as browsers do.
    """
    embedded = sniff.jpeg_icc_profile(data) if image.format in ("JPEG", "MPO") else _embedded_profile(image)
    points = sniff.colour_code_points(data)
    if points is None:
        if embedded or "srgb" in image.info or "gamma" not in image.info:
            return embedded, False
        # A PNG gAMA (and cHRM) without iCCP or sRGB chunk: as Chromium reads it.
        from handler import cicp  # noqa: PLC0415 - lazy: as below

        built = cicp.png_gamma_profile(image.info["gamma"], image.info.get("chromaticity"))
        return built, built is not None
    from handler import cicp  # noqa: PLC0415 - lazy: only uploads that describe colour by code points pay for it

    try:
        built = cicp.profile_for(points)
    except ValueError as exc:
        # As for an unusable ICC profile: what a browser shows without a description.
        fallback = "the embedded ICC profile" if embedded else "sRGB"
        LOG.warning("ignoring colour %s: %s; taking the pixels as %s", cicp.describe(points), exc, fallback)
        return embedded, False
    return built, built is not None


def _embedded_profile(image: Image.Image) -> bytes | None:
    """The ICC profile Pillow found in the container. Only bytes are one: a TIFF's ICC tag of a numeric or text
    field type comes out as a number, a tuple or a string, and is logged and ignored as an unusable profile is."""
    profile = image.info.get("icc_profile")
    if profile is None or isinstance(profile, bytes):
        return profile
    LOG.warning("ignoring an ICC profile that is a %s, not bytes", type(profile).__name__)
    return None


def _draft_size(size: tuple[int, int], plans: Sequence[Plan]) -> tuple[int, int] | None:
    """The decode size to ask a JPEG decoder for, keeping headroom over every variant; None: full size."""
    width, height = size
    needed = 0.0
    for plan in plans:
        left, top, right, bottom = plan.crop or (0, 0, width, height)
        needed = max(needed, plan.stored_size[0] / (right - left), plan.stored_size[1] / (bottom - top))
    needed *= _DRAFT_HEADROOM
    if needed > 0.5:
        return None
    return (math.ceil(width * needed), math.ceil(height * needed))


def _shrink_on_load(data: bytes, size: tuple[int, int], plans: Sequence[Plan]) -> tuple[int, int] | None:
    """`_draft_size`, except for a lossless JPEG: libjpeg cannot decode one scaled."""
    return None if sniff.jpeg_is_lossless(data) else _draft_size(size, plans)


def shrink_on_load_size(data: bytes, image: Image.Image, specs: Sequence[VariantSpec]) -> tuple[int, int] | None:
    """What `render` asks the JPEG decoder for (`draft`) for these specs; None for a full decode.

    Public so the benchmark's codec floor decodes exactly as much as the pipeline does.
    """
    orientation = read_orientation(image)
    return _shrink_on_load(data, image.size, [plan_variant(image.size, spec, orientation) for spec in specs])


def _pillow_orientation(image: Image.Image) -> object:
    """The orientation Pillow itself finds (EXIF tag, else its own XMP pattern); None when unreadable."""
    try:
        return image.getexif().get(ExifTags.Base.Orientation)
    except EXIF_ERRORS:
        return None


def _decode(image: Image.Image, data: bytes) -> None:
    """Decode the frame browsers show, with the decoder that reads it right; refuse pixel data that is not there."""
    try:
        if isinstance(image, PngImagePlugin.PngImageFile):
            _decode_png(image, data)
            return
        if isinstance(image, TiffImagePlugin.TiffImageFile):
            _route_tiff(image)
        image.load()
    except _DECODE_ERRORS as exc:
        raise Rejected("corrupt", f"pixel data cannot be decoded: {exc}") from None


def _decode_png(image: PngImagePlugin.PngImageFile, data: bytes) -> None:
    """Decode the frame browsers show, refusing image data that ends before the frame does.

    Pillow takes a zlib stream that ends, whole, after fewer rows than the frame has (libpng: "Not enough image
    data") and leaves the rest black. So the last row its decoder writes (interlaced: the last odd row, which only
    Adam7's last pass writes) is filled with `_UNWRITTEN` first. Still so after decoding, the stream is inflated
    again and counted, which is paid only when the last row has that very colour (or is white in a 1-bit image):
    measured on the 12 MP photo as a PNG, the mark costs nothing (360 ms to decode either way), a count 146 ms.
    """
    pixels = sniff.png_pixels(data)
    if pixels is None:
        raise Rejected("corrupt", "PNG does not start with an IHDR chunk (libpng reads no other)")
    animation_frame = _seek_first_animation_frame(image, data)
    left, top, right, bottom = image.tile[0].extents
    height = bottom - top
    row = height - 1 if not pixels.interlaced or height % 2 == 0 else height - 2
    box = (left, top + row, right, top + row + 1)
    bands = len(image.getbands())
    marker = Image.new(image.mode, (right - left, 1), _UNWRITTEN if bands == 1 else (_UNWRITTEN,) * bands)
    if row >= 0:
        if not animation_frame:  # which Pillow decodes over the IDAT image
            image.im = Image.core.new(image.mode, image.size)
        image.im.paste(marker.im, box)
    image.load()
    if animation_frame:
        image._prev_im = None  # the IDAT image Pillow keeps to blend the next frame over: not shown
    if row >= 0 and image.crop(box).tobytes() != marker.tobytes():
        return
    needed = pixels.scanline_bytes((right - left, height))
    inflated = _inflated_size(sniff.png_image_data(data, animation_frame=animation_frame), needed)
    if inflated < needed:
        raise Rejected(
            "corrupt",
            f"PNG image data ends early: it inflates to {inflated} bytes, the {right - left}x{height} frame's "
            f"rows take {needed}",
        )


def _seek_first_animation_frame(image: PngImagePlugin.PngImageFile, data: bytes) -> bool:
    """Seek an APNG whose IDAT image is not part of its animation to the animation's first frame, which browsers
    show (the IDAT image is for decoders without APNG support); whether it did.

    Browsers start an animation on a transparent black canvas, on which blending a frame OVER it is the same as
    SOURCE; Pillow would blend it over the IDAT image. An animation without frame data shows the IDAT image
    (Pillow's seek would fail on it).
    """
    if not image.info.get("default_image") or not sniff.png_image_data(data, animation_frame=True):
        return False
    image.seek(1)
    image.blend_op = PngImagePlugin.Blend.OP_SOURCE
    return True


def _inflated_size(pieces: Sequence[memoryview], limit: int) -> int:
    """How many bytes the zlib stream in `pieces` inflates to, counted up to `limit` or to where it ends or breaks
    (libpng shows what came before damage after the frame's rows), `_INFLATE_STEP` at a time."""
    stream, size = zlib.decompressobj(), 0
    with contextlib.suppress(zlib.error):
        for piece in pieces:
            pending = piece
            while size < limit and not stream.eof:
                out = stream.decompress(pending, _INFLATE_STEP)
                size += len(out)
                pending = stream.unconsumed_tail
                if not out and not pending:
                    break
    return size


def _route_tiff(image: TiffImagePlugin.TiffImageFile) -> None:
    """Send a TIFF to the decoder that reads its layout right, with the strips its frame needs.

    With PlanarConfiguration 2 (each sample in a plane of its own), Pillow's raw decoder unpacks each plane with
    one letter of the mode's raw mode: right for 8-bit RGB, RGBA and CMYK, garbage or an error for 16-bit samples,
    MinIsWhite, big-endian or associated-alpha ones. One sample per pixel is the same layout as PlanarConfiguration
    1, and is read as such; other layouts go to libtiff, as compressed ones do. libtiff's planar reader (through
    Pillow) zeroes grey's alpha and garbles LAB: those are refused, compressed or not. Bits stored in reverse order
    (FillOrder 2) go to libtiff too: Pillow has no raw mode for some of those layouts (palette under 8 bits, 8-bit
    MinIsWhite). libtiff hands samples over in this machine's byte order, which Pillow unpacks as the file's for
    big-endian signed and float samples: those are unpacked as native.
    """
    tags, tiff = image.tag_v2, TiffImagePlugin
    planar = tags.get(tiff.PLANAR_CONFIGURATION, 1) == 2
    if planar and image.mode in _PLANAR_MODES_MISREAD:
        raise Rejected(
            "unsupported_format",
            f"TIFF with {image.mode} samples in separate planes (PlanarConfiguration 2): no decoder here reads "
            "that layout right",
        )
    if tags.get(tiff.FILLORDER, 1) == 2 and not image.use_load_libtiff:
        _decode_with_libtiff(image)  # Pillow has no raw mode for some bit-reversed layouts; libtiff reverses any
    if planar and not image.use_load_libtiff:
        if tags.get(tiff.SAMPLESPERPIXEL, 1) == 1:
            _set_up_as(image, tiff.PLANAR_CONFIGURATION, 1)
        elif not _planes_pillow_reads(image):
            _decode_with_libtiff(image)
    if image.use_load_libtiff:
        image.tile = [
            tile._replace(args=(_LIBTIFF_NATIVE_RAWMODES.get(tile.args[0], tile.args[0]), *tile.args[1:]))
            for tile in image.tile
        ]
    else:
        _strips_for_the_frame(image)
    _colormap_as_libtiff_reads(image)


def _colormap_as_libtiff_reads(image: TiffImagePlugin.TiffImageFile) -> None:
    """Read a colormap of 8-bit values as 8-bit, as libtiff and ImageMagick do.

    TIFF colormaps hold 16-bit values, but some writers store 0-255 in them; Pillow takes the high byte, and the
    picture turns black. libtiff (TIFFRGBAImage's checkcmap) and ImageMagick take a colormap with no value of 256
    or more to be 8-bit.
    """
    colormap = image.tag_v2.get(TiffImagePlugin.COLORMAP) if image.mode in ("P", "PA") else None
    if colormap and max(colormap) < 256:
        LOG.info("TIFF colormap holds only values below 256: read as 8-bit, as libtiff does")
        image.palette = ImagePalette.raw("RGB;L", bytes(colormap))


def _planes_pillow_reads(image: TiffImagePlugin.TiffImageFile) -> bool:
    """Whether Pillow's raw decoder reads an uncompressed TIFF in separate planes right: it unpacks each plane with
    one letter of the raw mode, which is right when those letters are the mode's bands (RGB, RGBA, CMYK; not
    associated alpha's `RGBa`) and the samples 8-bit."""
    letters = "".join(dict.fromkeys(tile.args[0] for tile in image.tile))
    bits = image.tag_v2.get(TiffImagePlugin.BITSPERSAMPLE, ())
    return image.mode in _PLANAR_MODES_PILLOW_READS and letters == image.mode and set(bits) == {8}


def _strips_for_the_frame(image: TiffImagePlugin.TiffImageFile) -> None:
    """Keep the strips or tiles a TIFF's frame needs, for Pillow's raw decoder, and refuse too few, as libtiff does:
    Pillow left what too few cover black, and decoded more over the top of the frame again."""
    width, height = image.size
    planes = len(image.getbands()) if image.tag_v2.get(TiffImagePlugin.PLANAR_CONFIGURATION, 1) == 2 else 1
    needed, covered, kept = width * height * planes, 0, 0
    for left, top, right, bottom in (tile.extents for tile in image.tile):
        if covered >= needed:
            break
        covered, kept = covered + (right - left) * (bottom - top), kept + 1
    image.tile = image.tile[:kept]
    if covered < needed:
        raise Rejected(
            "corrupt",
            f"TIFF pixel data is missing: its {len(image.tile)} strips or tiles cover {covered} of the "
            f"{width}x{height} frame's {width * height * planes} pixels{' in its planes' if planes > 1 else ''}",
        )


def _transparent_around(frame: Image.Image, box: tuple[int, int, int, int] | None) -> Image.Image:
    """A GIF's screen with what its first image (at `box`) leaves uncovered transparent, as browsers show it; an
    APNG's or animated WebP's canvas around its first frame likewise.

    Pillow fills that part with colour 0 of the palette, opaque unless it is the transparent one (an APNG's with
    its IDAT image); browsers also ignore the screen's background colour. Variants flatten it onto their
    `background` where the codec needs it.
    """
    width, height = frame.size
    if box is None or (box[0] <= 0 and box[1] <= 0 and box[2] >= width and box[3] >= height):
        return frame
    with_alpha = frame.convert("LA" if frame.mode in ("L", "LA") else "RGBA")
    alpha = Image.new("L", frame.size, 0)
    alpha.paste(with_alpha.getchannel("A").crop(box), box[:2])
    with_alpha.putalpha(alpha)
    return with_alpha


def _first_frame_box(image: Image.Image, data: bytes) -> tuple[int, int, int, int] | None:
    """Where the frame we render lies on its canvas when it need not cover it: a GIF's first image, an animated
    WebP's first frame, or the first animation frame of an APNG whose IDAT image is not part of its animation (the
    canvas starts transparent)."""
    if image.format == "GIF":
        return sniff.gif_first_image_box(data)
    if image.format == "WEBP":
        return sniff.webp_first_frame_box(data)
    if isinstance(image, PngImagePlugin.PngImageFile) and image.tell() == 1:
        return image.info["bbox"]
    return None


def _as_browsers_show(image: Image.Image, data: bytes) -> Image.Image:
    """The decoded frame with transparency where browsers give it and Pillow does not, or the other way round: a
    PNG's tRNS as libpng applies it, a BMP's alpha as Chromium reads it."""
    if isinstance(image, PngImagePlugin.PngImageFile):
        return _png_transparency(image, data)
    if image.format == "BMP":
        return _bmp_alpha(image, data)
    return image


def _png_transparency(image: PngImagePlugin.PngImageFile, data: bytes) -> Image.Image:
    """`image` with `info["transparency"]` as libpng applies the tRNS chunk, in Pillow's terms for its mode.

    Pillow applies a tRNS libpng ignores (one longer than the palette, which also fails Pillow's conversion past
    256 entries), scales 1- to 4-bit grey to 8 bits but not its key, and compares a 16-bit RGB key with its 8-bit
    pixels: such an image is keyed here on both bytes of each sample.
    """
    pixels = sniff.png_pixels(data)
    image.info.pop("transparency", None)
    if pixels is None or pixels.transparency is None:
        return image
    key = pixels.transparency
    if isinstance(key, bytes):
        image.info["transparency"] = key
        return image
    if image.mode == "RGB" and pixels.bit_depth == 16:
        return _keyed_rgb16(image, key, data, interlaced=pixels.interlaced)
    if image.mode == "RGB":
        image.info["transparency"] = key
    else:  # grey: Pillow spreads 1 to 4 bits over 0..255, keeps 8 and 16
        image.info["transparency"] = key[0] * 255 // ((1 << pixels.bit_depth) - 1) if pixels.bit_depth < 8 else key[0]
    return image


def _keyed_rgb16(
    image: PngImagePlugin.PngImageFile, key: tuple[int, ...], data: bytes, *, interlaced: bool
) -> Image.Image:
    """A 16-bit RGB PNG with the pixels that equal its tRNS key transparent, as RGBA.

    Pillow decodes only the high byte of each sample; the low bytes are decoded again from the same zlib stream
    (its raw mode for little-endian samples takes the other byte). Paid by 16-bit RGB PNGs with a tRNS only.
    """
    box = _first_frame_box(image, data) or (0, 0, *image.size)
    low = Image.new("RGB", (box[2] - box[0], box[3] - box[1]))
    stream = b"".join(sniff.png_image_data(data, animation_frame=image.tell() == 1))
    low.frombytes(stream, "zip", "RGB;16L", int(interlaced))
    wanted = [value >> 8 for value in key] + [value & 0xFF for value in key]
    bands = image.crop(box).split() + low.split()
    differs = [
        band.point([0 if level == want else 255 for level in range(256)])
        for band, want in zip(bands, wanted, strict=True)
    ]
    alpha = Image.new("L", image.size, 255)
    alpha.paste(functools.reduce(ImageChops.lighter, differs), box[:2])
    keyed = image.convert("RGBA")
    keyed.putalpha(alpha)
    return keyed


def _bmp_alpha(image: Image.Image, data: bytes) -> Image.Image:
    """A BMP's alpha as Chromium reads it: an alpha channel that is 0 everywhere is unused, so the image is opaque
    (Windows shows it so too); the alpha bit of an A1R5G5B5 BMP counts (Pillow drops it)."""
    if image.mode == "RGBA":
        return image.convert("RGB") if image.getextrema()[3] == (0, 0) else image
    bitfields = sniff.bmp_bitfields(data)
    if bitfields is None or bitfields.layout != "A1R5G5B5":
        return image
    stride = (image.size[0] * 2 + 3) & ~3  # 16-bit samples, rows padded to 4 bytes
    pixels = Image.frombuffer(
        "I;16",
        image.size,
        memoryview(data)[bitfields.offset :],
        "raw",
        "I;16",
        stride,
        -1 if bitfields.height > 0 else 1,
    )
    alpha = ImageMath.lambda_eval(lambda args: (args["p"] >> 15) * 255, p=pixels.convert("I")).convert("L")
    if alpha.getextrema() == (0, 0):
        return image
    with_alpha = image.convert("RGBA")
    with_alpha.putalpha(alpha)
    return with_alpha


def _bmp_layout_unsupported(data: bytes) -> Rejected | None:
    """`unsupported_format` naming the layout of a valid BMP that neither Pillow nor `handler.bmp` decodes (an
    embedded JPEG or PNG, OS/2 Huffman 1D or RLE24, bitfields at 24 bits): not a damaged one. None when the header
    is no such layout (damage)."""
    layout = bmp.unsupported(data)
    return None if layout is None else Rejected("unsupported_format", layout)


@dataclass
class _Sized:
    """A resampled frame and whether it shows the whole picture (so it can feed smaller ones)."""

    image: Image.Image
    full_frame: bool
    from_decoded: bool = False
    """Made from (or being) the decoded frame itself, so still in its colour space when that is deferred."""


def _resize(
    source: Image.Image,
    size: tuple[int, int],
    box: tuple[float, float, float, float],
    *,
    pool: ThreadPoolExecutor | None,
) -> Image.Image:
    """Lanczos resize of `box` to `size`; large ones in horizontal bands, run on the pool if any.

    Each band takes its filter taps from the whole source (Pillow's `box` reads
    beyond its edges), so seams are invisible; the banding depends only on the
    sizes, never on the thread count, so threaded and inline output are identical.
    Not used when Pillow's `reducing_gap` pre-shrink kicks in (its grid would
    differ per band), which is when the resize is cheap anyway.
    """
    width, height = size
    ratio = max((box[2] - box[0]) / width, (box[3] - box[1]) / height)
    if width * height < _MIN_BANDED_PIXELS or ratio >= 2 * _REDUCING_GAP:
        return source.resize(size, _RESAMPLE, box=box, reducing_gap=_REDUCING_GAP)
    box_h = box[3] - box[1]
    rows = [(height * i // _RESIZE_BANDS, height * (i + 1) // _RESIZE_BANDS) for i in range(_RESIZE_BANDS)]
    parts = (pool.map if pool is not None else map)(
        lambda r: source.resize(
            (width, r[1] - r[0]),
            _RESAMPLE,
            box=(box[0], box[1] + box_h * r[0] / height, box[2], min(box[3], box[1] + box_h * r[1] / height)),
            reducing_gap=_REDUCING_GAP,
        ),
        rows,
    )
    result = Image.new(source.mode, size)
    for (top, _), part in zip(rows, parts, strict=True):
        result.paste(part, (0, top))
    return result


def _resample(
    decoded: Image.Image,
    original_size: tuple[int, int],
    plan: Plan,
    made: list[_Sized],
    *,
    pool: ThreadPoolExecutor | None,
) -> _Sized:
    """Make `plan`'s frame from the smallest suitable full-frame source already at hand."""
    orig_w, orig_h = original_size
    crop = plan.crop or (0.0, 0.0, float(orig_w), float(orig_h))
    crop_fraction_w = (crop[2] - crop[0]) / orig_w
    target_w, target_h = plan.stored_size
    best = decoded
    for candidate in made:
        if not candidate.full_frame:
            continue
        cand_w, cand_h = candidate.image.size
        if plan.crop is None and (cand_w, cand_h) == (target_w, target_h):
            return candidate
        ratio = cand_w * crop_fraction_w / target_w
        if ratio >= _MIN_REUSE_RATIO and cand_w * cand_h < best.size[0] * best.size[1]:
            best = candidate.image
    if plan.crop is None and best.size == (target_w, target_h):
        return _Sized(best, full_frame=True, from_decoded=best is decoded)
    scale_x, scale_y = best.size[0] / orig_w, best.size[1] / orig_h
    # Clamped: a product can land an ulp outside the source, which Pillow refuses.
    box = (
        crop[0] * scale_x,
        crop[1] * scale_y,
        min(best.size[0], crop[2] * scale_x),
        min(best.size[1], crop[3] * scale_y),
    )
    resized = _resize(best, (target_w, target_h), box, pool=pool)
    return _Sized(resized, full_frame=plan.crop is None, from_decoded=best is decoded)


def _validate_limits(pixel_limit: int, max_bytes: int, workers: int | None) -> int:
    if isinstance(pixel_limit, bool) or not isinstance(pixel_limit, int) or not 1 <= pixel_limit <= MAX_PIXEL_LIMIT:
        raise ValueError(f"pixel_limit must be an integer 1..{MAX_PIXEL_LIMIT}, got {pixel_limit!r}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be None (one per CPU) or an integer >= 1, got {workers!r}")
    return workers


def render(
    data: bytes,
    specs: Sequence[VariantSpec],
    *,
    pixel_limit: int = DEFAULT_PIXEL_LIMIT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    workers: int | None = None,
) -> list[RenderedVariant]:
    """Render every variant of one upload, in the order of `specs`.

    Raises `Rejected` (with `.reason` in `REASONS`) for uploads we refuse; any
    other exception is a bug or a resource problem, not the upload's fault.
    `workers=None` sizes the thread pool (colour, resize, encode) to the available CPUs; 1 runs inline.
    """
    if not specs:
        raise ValueError("specs must name at least one variant")
    automatic = workers is None
    workers = _validate_limits(pixel_limit, max_bytes, workers)
    if len(data) > max_bytes:
        raise Rejected("too_large", f"{len(data)} bytes exceeds the limit {max_bytes}")
    image = _open(data, pixel_limit)
    if automatic:
        workers = _threads_that_fit(workers, image.size[0] * image.size[1], len(data))
    if image.format in ("JPEG", "MPO"):
        # EXIF sits in the header: plan with it, then let the decoder shrink on load.
        original_size = image.size
        orientation = read_orientation(image)
        plans = [plan_variant(original_size, spec, orientation) for spec in specs]
        draft_size = _shrink_on_load(data, original_size, plans)
        if draft_size is not None:
            image.draft(None, draft_size)
        _decode(image, data)
    else:
        # Other containers may carry EXIF after the pixels (PNG eXIf): decode first. Pillow's TIFF decoder
        # also turns the pixels upright itself (and drops the tag), even for an XMP-only orientation its
        # header size did not announce: the frame's size is known only now. It strips only the XMP forms
        # it reads, so one it has applied must not be read again from another form left in the packet.
        upright_on_load = image.format == "TIFF" and _pillow_orientation(image) in TRANSPOSE_FOR_ORIENTATION
        _decode(image, data)
        original_size = image.size
        orientation = 1 if upright_on_load else read_orientation(image)
        plans = [plan_variant(original_size, spec, orientation) for spec in specs]
    LOG.debug("decoded %s %s %s at %s", image.format, image.mode, original_size, image.size)
    icc, built_rgb_profile = _colour_profile(image, data)
    decoded = _transparent_around(to_working_mode(_as_browsers_show(image, data)), _first_frame_box(image, data))
    if built_rgb_profile and decoded.mode in ("L", "LA"):
        # Code points or gAMA describe grey pixels too (a greyscale PNG's cICP or gAMA); the profile built is RGB.
        decoded = decoded.convert("RGBA" if decoded.mode == "LA" else "RGB")
    full_size = any(plan.crop is None and plan.stored_size == decoded.size for plan in plans)
    if full_size and orientation in TRANSPOSE_FOR_ORIENTATION:
        # A full-size variant needs the upright frame anyway: turn the decoded frame once, up front, and plan on
        # it, rather than hold it beside its upright copy while encoding (358 MB of RGBA at the pixel limit).
        # Full size means no shrink-on-load, so the decoded frame is the whole picture.
        decoded = decoded.transpose(TRANSPOSE_FOR_ORIENTATION[orientation])
        original_size, orientation = decoded.size, 1
        plans = [plan_variant(original_size, spec, orientation) for spec in specs]
    elif decoded is image and image.format == "WEBP":
        # Pillow's WebP reader keeps libwebp's decoded canvas for the next frame: a copy lets `del image` free it.
        decoded = image.copy()
    # An ICC transform costs per pixel. When no variant is the decoded frame itself, transform each
    # frame resampled from it instead (for a phone's Display P3 photo: the 1200 px variant, not the
    # 3 MP decode); resampling before or after the transform differs by ~0.3 dB. CMYK is transformed
    # first: Pillow resamples colour, not ink.
    defer_icc = bool(icc) and decoded.mode != "CMYK" and not full_size
    order = sorted(range(len(specs)), key=lambda i: (plans[i].pixels, _CODEC_COST[specs[i].format]), reverse=True)
    made: list[_Sized] = []
    upright: dict[int, Image.Image] = {}
    prepared: dict[tuple[int, str, str], Image.Image] = {}
    results: dict[int, Future[bytes] | bytes] = {}
    transpose = TRANSPOSE_FOR_ORIENTATION.get(orientation)

    # One pool for the colour transform, resizes and encodes; workers=1 starts no thread at all.
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="render") if workers > 1 else None
    try:
        if not defer_icc:
            decoded = to_srgb(decoded, icc, pool=pool)
        del image  # when colour conversion made a new frame, free the decoder's one (36 MB at 12 MP) now
        for index in order:
            spec = specs[index]
            sized = _resample(decoded, original_size, plans[index], made, pool=pool)
            if defer_icc and sized.from_decoded:
                sized = _Sized(to_srgb(sized.image, icc, pool=pool), sized.full_frame)
            if all(sized is not m for m in made):
                made.append(sized)
            frame = upright.get(id(sized.image))
            if frame is None:
                frame = sized.image.transpose(transpose) if transpose is not None else sized.image
                upright[id(sized.image)] = frame
            key = (id(frame), spec.format, spec.background)
            if key not in prepared:
                prepared[key] = prepare_for_format(frame, spec)
            if pool is None:
                results[index] = save_prepared(prepared[key], spec)
            else:
                results[index] = pool.submit(save_prepared, prepared[key], spec)
        encoded = {i: r.result() if isinstance(r, Future) else r for i, r in results.items()}
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    rendered = []
    for index, spec in enumerate(specs):
        width, height = output_size(plans[index], orientation)
        rendered.append(
            RenderedVariant(
                name=spec.name,
                format=spec.format,
                data=encoded[index],
                width=width,
                height=height,
                content_type=spec.content_type,
                extension=spec.extension,
            )
        )
    return rendered
