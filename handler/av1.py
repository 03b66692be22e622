"""The AV1 frame size an AVIF's coded data allows, read from its sequence headers without a decoder.

An AVIF declares its image size in `ispe` properties, and the pixel limit reads those (`sniff.declared_size`);
the decoder does not: libavif decodes the AV1 frame at the size its bitstream codes, then scales the result to
`ispe`. A 5.4 KB file whose `ispe` said 64x48 over a 16384x16384 frame took 1.34 GB. The AVIF spec requires
`ispe` to equal the coded frame size (UpscaledWidth x FrameHeight), and Chrome refuses a mismatch.

A sequence header OBU (AV1 spec 5.5) bounds every frame that follows it (max_frame_width/height_minus_1), so
the sequence headers of every AV1 image the decoder reads for the first frame are read here, in its data and in
its `av1C` configOBUs: the primary item or a grid's tiles, the primary item's auxiliary images (alpha), and the
first sample of each AV1 track of an image sequence (`avis`: libavif prefers it to the items, and scales it to
the track header's size instead). Headers only, in at most `MAX_STEPS` steps; damaged data yields no size
rather than an exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from handler.sniff import accepted_container, bmff_boxes, bmff_full_box

MAX_STEPS = 500_000
"""Boxes, item references, item locations, extents and OBUs read per upload at most (0.3-0.6 s of Python).
A photo takes about 25; a 10,000-tile grid (the most `sniff.ISO_BMFF_PART_LIMIT` lets through) 120,000 in 0.15 s.
A file that needs more cannot be checked, and `frame_size_conflict` says so rather than let it be decoded."""

_BYTES_PER_STEP = 256
"""Bytes of an item stored in several extents that count as one step when they are joined."""

_OBU_SEQUENCE_HEADER = 1
_SEQUENCE_HEADER_BYTES = 1024
"""Bytes of a sequence header OBU read at most: the longest (32 operating points with decoder models) has ~600."""


class _ExhaustedError(Exception):
    """More than `MAX_STEPS` steps: the file has more parts than any encoder writes."""


class _EndOfDataError(Exception):
    """A sequence header ends before the field being read."""


class _Budget:
    """Steps left of `MAX_STEPS`, shared by every walk over one upload."""

    def __init__(self) -> None:
        self.left = MAX_STEPS

    def spend(self, steps: int = 1) -> None:
        self.left -= steps
        if self.left < 0:
            raise _ExhaustedError


class _Bits:
    """The AV1 spec's f(n) and uvlc() over a byte string, most significant bit first."""

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = 8 * len(data)

    def f(self, n: int) -> int:
        if n > self._left:
            raise _EndOfDataError
        self._left -= n
        return self._value >> self._left & ((1 << n) - 1)

    def skip_uvlc(self) -> None:
        zeros = 0
        while not self.f(1):  # ends at the first 1 or, through f, at the end of the data
            zeros += 1
        if zeros < 32:
            self.f(zeros)


def _skip_operating_points(bits: _Bits) -> None:
    """Timing and decoder model info and the operating points of a full sequence header (AV1 spec 5.5.1-5.5.5)."""
    decoder_model, delay_bits = False, 0
    if bits.f(1):  # timing_info_present_flag
        bits.f(64)  # num_units_in_display_tick, time_scale
        if bits.f(1):  # equal_picture_interval
            bits.skip_uvlc()  # num_ticks_per_picture_minus_1
        decoder_model = bits.f(1) == 1
        if decoder_model:
            delay_bits = bits.f(5) + 1  # buffer_delay_length_minus_1
            bits.f(42)  # num_units_in_decoding_tick, buffer_removal_time_length_minus_1, ..._presentation_...
    initial_display_delay = bits.f(1)
    for _ in range(bits.f(5) + 1):  # operating_points_cnt_minus_1
        bits.f(12)  # operating_point_idc
        if bits.f(5) > 7:  # seq_level_idx
            bits.f(1)  # seq_tier
        if decoder_model and bits.f(1):  # decoder_model_present_for_this_op
            bits.f(2 * delay_bits + 1)  # decoder_buffer_delay, encoder_buffer_delay, low_delay_mode_flag
        if initial_display_delay and bits.f(1):
            bits.f(4)  # initial_display_delay_minus_1


def max_frame_size(sequence_header: bytes) -> tuple[int, int] | None:
    """(max_frame_width_minus_1 + 1, max_frame_height_minus_1 + 1) of a sequence header OBU's payload; None if cut."""
    bits = _Bits(sequence_header)
    try:
        bits.f(4)  # seq_profile, still_picture
        if bits.f(1):  # reduced_still_picture_header
            bits.f(5)  # seq_level_idx[0]
        else:
            _skip_operating_points(bits)
        width_bits, height_bits = bits.f(4) + 1, bits.f(4) + 1
        return bits.f(width_bits) + 1, bits.f(height_bits) + 1
    except _EndOfDataError:
        return None


def _leb128(obus: bytes | memoryview, pos: int) -> tuple[int, int] | None:
    """(value, position after it) of the leb128 at `pos`: at most 8 bytes, as AV1 allows."""
    value = 0
    for i, byte in enumerate(obus[pos : pos + 8]):
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    return None


def _sequence_headers(obus: bytes | memoryview, budget: _Budget) -> Iterator[tuple[int, int]]:
    """Max frame size of every sequence header among OBUs in the low overhead format (AV1 spec 5.2), as stored in
    AVIF items and `av1C`. Every header counts, not only the first: a later one would govern the frames after it."""
    pos, end = 0, len(obus)
    while pos < end:
        budget.spend()
        header = obus[pos]
        pos += 2 if header & 0x04 else 1  # obu_extension_flag: one more header byte
        if header & 0x02:  # obu_has_size_field
            size = _leb128(obus, pos)
            if size is None:
                return
            length, pos = size
        else:  # the OBU runs to the end of the data
            length = end - pos
        if header >> 3 & 0x0F == _OBU_SEQUENCE_HEADER:
            frame = max_frame_size(bytes(obus[pos : pos + min(length, _SEQUENCE_HEADER_BYTES)]))
            if frame is not None:
                yield frame
        pos += length


def _children(data: bytes, start: int, end: int, budget: _Budget) -> dict[bytes, tuple[int, int]]:
    """Payload span of the first box of each type in data[start:end]."""
    children: dict[bytes, tuple[int, int]] = {}
    for kind, s, e in bmff_boxes(data, start, end):
        budget.spend()
        children.setdefault(kind, (s, e))
    return children


def _uint(data: bytes, pos: int, width: int) -> int:
    """The big-endian unsigned integer of `width` bytes (0: none) at `pos`."""
    return int.from_bytes(data[pos : pos + width], "big")


def _primary(data: bytes, pitm: tuple[int, int] | None) -> int | None:
    head = pitm and bmff_full_box(data, pitm)
    if not head:
        return None
    width = 2 if head[0] == 0 else 4
    return _uint(data, head[2], width) if head[3] - head[2] >= width else None


def _item_types(data: bytes, iinf: tuple[int, int] | None, budget: _Budget) -> dict[int, bytes]:
    """Item ID -> item type (`av01`, `grid`, ...) from `iinf`'s version 2 and 3 `infe` boxes."""
    head = iinf and bmff_full_box(data, iinf)
    if not head:
        return {}
    version, _, pos, end = head
    types: dict[int, bytes] = {}
    for kind, s, e in bmff_boxes(data, pos + (2 if version == 0 else 4), end):
        budget.spend()
        infe = bmff_full_box(data, (s, e)) if kind == b"infe" else None
        if infe is None or infe[0] < 2:
            continue
        width = 2 if infe[0] == 2 else 4
        if infe[3] - infe[2] >= width + 6:
            types.setdefault(_uint(data, infe[2], width), data[infe[2] + width + 2 : infe[2] + width + 6])
    return types


def _references(
    data: bytes, iref: tuple[int, int] | None, primary: int, budget: _Budget
) -> tuple[dict[int, list[int]], list[int]]:
    """(item -> the items it is derived from (`dimg`: a grid's tiles), items auxiliary to the primary (`auxl`))."""
    head = iref and bmff_full_box(data, iref)
    if not head:
        return {}, []
    version, _, pos, end = head
    width, code = (2, "H") if version == 0 else (4, "I")
    sources: dict[int, list[int]] = {}
    auxiliary: list[int] = []
    for kind, s, e in bmff_boxes(data, pos, end):
        budget.spend()
        if kind not in (b"dimg", b"auxl") or e - s < width + 2:
            continue
        count = min(int.from_bytes(data[s + width : s + width + 2], "big"), (e - s - width - 2) // width)
        budget.spend(count)
        targets = struct.unpack_from(f">{count}{code}", data, s + width + 2)
        if kind == b"dimg":
            sources.setdefault(_uint(data, s, width), []).extend(targets)
        elif primary in targets:
            auxiliary.append(_uint(data, s, width))
    return sources, auxiliary


def _properties(
    data: bytes, iprp: tuple[int, int] | None, items: set[int], budget: _Budget
) -> dict[int, list[tuple[bytes, int, int]]]:
    """Item -> (type, payload start, payload end) of each property `ipma` associates with it, for `items` only."""
    children = _children(data, *iprp, budget) if iprp else {}
    properties = []
    if b"ipco" in children:
        for box in bmff_boxes(data, *children[b"ipco"]):
            budget.spend()
            properties.append(box)
    head = b"ipma" in children and bmff_full_box(data, children[b"ipma"])
    if not head or head[3] - head[2] < 4:
        return {}
    version, flags, pos, end = head
    id_size, index_size = (2 if version == 0 else 4), (2 if flags & 1 else 1)
    mask = 0x7FFF if index_size == 2 else 0x7F  # the top bit flags the property as essential
    associated: dict[int, list[tuple[bytes, int, int]]] = {}
    entries, pos = int.from_bytes(data[pos : pos + 4], "big"), pos + 4
    for _ in range(entries):
        budget.spend()
        if pos + id_size + 1 > end:
            break
        item, count = _uint(data, pos, id_size), data[pos + id_size]
        pos += id_size + 1
        if pos + count * index_size > end:
            break
        if item in items:
            budget.spend(count)
            starts = range(pos, pos + count * index_size, index_size)
            indices = [int.from_bytes(data[p : p + index_size], "big") & mask for p in starts]
            associated.setdefault(item, []).extend(properties[i - 1] for i in indices if 0 < i <= len(properties))
        pos += count * index_size
    return associated


def _locations(
    data: bytes, iloc: tuple[int, int] | None, idat: tuple[int, int] | None, items: set[int], budget: _Budget
) -> dict[int, list[tuple[int, int]]]:
    """Item -> its extents' spans in `data`, for `items` stored in this file (`iloc` construction method 0) or in
    `idat` (method 1); an extent length of 0 runs to the end of the file or of `idat`."""
    head = iloc and bmff_full_box(data, iloc)
    if not head or head[0] > 2 or head[3] - head[2] < 2:
        return {}
    version, _, pos, end = head
    offset_size, length_size, base_size = data[pos] >> 4, data[pos] & 0x0F, data[pos + 1] >> 4
    index_size = data[pos + 1] & 0x0F if version > 0 else 0
    if any(size not in (0, 4, 8) for size in (offset_size, length_size, base_size, index_size)):
        return {}
    id_size = 2 if version < 2 else 4
    method_size = 2 if version > 0 else 0
    extent_size = index_size + offset_size + length_size
    entries, pos = _uint(data, pos + 2, id_size), pos + 2 + id_size
    spans: dict[int, list[tuple[int, int]]] = {}
    for _ in range(entries):
        budget.spend()
        extents_at = pos + id_size + method_size + 2 + base_size
        if extents_at + 2 > end:
            break
        item = _uint(data, pos, id_size)
        method = data[pos + id_size + 1] & 0x0F if version > 0 else 0
        reference = _uint(data, pos + id_size + method_size, 2)
        base = _uint(data, extents_at - base_size, base_size)
        extents = _uint(data, extents_at, 2)
        first, pos = extents_at + 2, extents_at + 2 + extents * extent_size
        if pos > end:
            break
        origin, limit = (0, len(data)) if method == 0 else (idat or (0, 0))
        if item not in items or item in spans or reference != 0 or method > 1 or (method == 1 and idat is None):
            continue
        budget.spend(extents)
        item_spans = []
        for at in (first + extent * extent_size for extent in range(extents)):  # extent_size may be 0
            offset = _uint(data, at + index_size, offset_size)
            length = _uint(data, at + index_size + offset_size, length_size)
            start = origin + base + offset
            item_spans.append((start, limit if length == 0 else min(start + length, limit)))
        spans[item] = item_spans
    return spans


def _item_data(data: bytes, spans: list[tuple[int, int]], budget: _Budget) -> bytes | memoryview:
    """An item's bytes: a view of its one extent, or its extents joined."""
    if len(spans) == 1:
        start, stop = spans[0]
        return memoryview(data)[start:stop]
    budget.spend(sum(max(stop - start, 0) for start, stop in spans) // _BYTES_PER_STEP)
    return b"".join(data[start:stop] for start, stop in spans)


@dataclass(frozen=True)
class _Image:
    """An AV1 image a decoder reads: the largest frame its sequence headers allow, and the sizes it declares."""

    name: str
    declared_by: str
    coded: tuple[int, int] | None
    declared: list[tuple[int, int]]


def _largest(streams: list[bytes | memoryview], budget: _Budget) -> tuple[int, int] | None:
    """The largest width and the largest height the sequence headers among `streams` allow."""
    frames = [frame for obus in streams for frame in _sequence_headers(obus, budget)]
    return (max(w for w, _ in frames), max(h for _, h in frames)) if frames else None


def _item_images(data: bytes, meta: tuple[int, int], budget: _Budget) -> list[_Image]:
    """The AV1 image items a decoder reads for the primary image: the primary item or the items it is derived
    from (a grid's tiles), and likewise for each auxiliary image (alpha) of the primary item."""
    boxes = _children(data, *meta, budget)
    primary = _primary(data, boxes.get(b"pitm"))
    if primary is None:
        return []
    types = _item_types(data, boxes.get(b"iinf"), budget)
    sources, auxiliary = _references(data, boxes.get(b"iref"), primary, budget)
    wanted = [
        item
        for root in (primary, *auxiliary)
        for item in ([root] if types.get(root) == b"av01" else sources.get(root, []))
        if types.get(item) == b"av01"
    ]
    ids = set(wanted)
    properties = _properties(data, boxes.get(b"iprp"), ids, budget)
    locations = _locations(data, boxes.get(b"iloc"), boxes.get(b"idat"), ids, budget)
    images = []
    for item in dict.fromkeys(wanted):
        associated = properties.get(item, [])
        streams = [memoryview(data)[s + 4 : e] for kind, s, e in associated if kind == b"av1C"]
        if item in locations:
            streams.append(_item_data(data, locations[item], budget))
        declared = [
            (_uint(data, s + 4, 4), _uint(data, s + 8, 4))
            for kind, s, e in associated
            if kind == b"ispe" and e - s >= 12
        ]
        images.append(_Image(f"item {item}", "ispe", _largest(streams, budget), declared))
    return images


def _descend(
    data: bytes, span: tuple[int, int] | None, path: tuple[bytes, ...], budget: _Budget
) -> tuple[int, int] | None:
    """Payload span of the box at `path` below `span`, each step the first box of its type."""
    for kind in path:
        if span is None:
            return None
        span = _children(data, *span, budget).get(kind)
    return span


def _av01_config(data: bytes, stsd: tuple[int, int] | None, budget: _Budget) -> memoryview | None:
    """The configOBUs of the first `av01` sample entry's `av1C` (empty without one); None for a track of no AV1."""
    head = stsd and bmff_full_box(data, stsd)
    if not head:
        return None
    for kind, s, e in bmff_boxes(data, head[2] + 4, head[3]):
        budget.spend()
        if kind == b"av01":
            av1c = _children(data, s + 78, e, budget).get(b"av1C")  # after the VisualSampleEntry's 78 bytes
            return memoryview(data)[av1c[0] + 4 : av1c[1]] if av1c else memoryview(b"")
    return None


def _first_sample(data: bytes, stbl: dict[bytes, tuple[int, int]]) -> memoryview | None:
    """The first sample of a track (the first chunk's first: no `stsc` needed), by `stsz` and `stco` or `co64`."""
    stsz = bmff_full_box(data, stbl[b"stsz"]) if b"stsz" in stbl else None
    if stsz is None or stsz[3] - stsz[2] < 12 or _uint(data, stsz[2] + 4, 4) == 0:
        return None
    size = _uint(data, stsz[2], 4) or _uint(data, stsz[2] + 8, 4)
    for kind, width in ((b"stco", 4), (b"co64", 8)):
        chunks = bmff_full_box(data, stbl[kind]) if kind in stbl else None
        if chunks and chunks[3] - chunks[2] >= 4 + width and _uint(data, chunks[2], 4) > 0:
            offset = _uint(data, chunks[2] + 4, width)
            return memoryview(data)[offset : offset + size]
    return None


def _track_images(data: bytes, moov: tuple[int, int], budget: _Budget) -> list[_Image]:
    """The first frame of each AV1 track (an image sequence): libavif decodes it instead of the primary item, and
    scales it to the track header's (`tkhd`) size. The pipeline renders the first frame only."""
    images = []
    for kind, s, e in bmff_boxes(data, *moov):
        budget.spend()
        stbl_span = _descend(data, (s, e), (b"mdia", b"minf", b"stbl"), budget) if kind == b"trak" else None
        stbl = _children(data, *stbl_span, budget) if stbl_span else {}
        config = _av01_config(data, stbl.get(b"stsd"), budget)
        if config is None:
            continue
        streams: list[bytes | memoryview] = [config]
        sample = _first_sample(data, stbl)
        if sample is not None:
            streams.append(sample)
        tkhd = _descend(data, (s, e), (b"tkhd",), budget)
        head = tkhd and bmff_full_box(data, tkhd)
        declared, name = [], "track"
        if head:
            version, _, pos, end = head
            name = f"track {_uint(data, pos + (16 if version == 1 else 8), 4)}"
            at = pos + (84 if version == 1 else 72)  # width and height, 16.16 fixed point, end the box
            if at + 8 <= end:
                declared.append((_uint(data, at, 4) >> 16, _uint(data, at + 4, 4) >> 16))
        images.append(_Image(name, "tkhd", _largest(streams, budget), declared))
    return images


def _images(data: bytes) -> list[_Image]:
    """Every AV1 image a decoder may read for the first frame of an AVIF (or HEIF): items, then tracks."""
    if accepted_container(data) not in ("AVIF", "HEIF"):
        return []
    budget = _Budget()
    top = _children(data, 0, len(data), budget)
    meta = bmff_full_box(data, top[b"meta"]) if b"meta" in top else None
    images = _item_images(data, (meta[2], meta[3]), budget) if meta else []
    if b"moov" in top:
        images += _track_images(data, top[b"moov"], budget)
    return images


def coded_size(data: bytes) -> tuple[int, int] | None:
    """The largest frame (width, height) the AV1 sequence headers of the images a decoder reads allow.

    Width and height are each the largest over those images (the primary item or its grid's tiles, alpha, an
    image sequence's first frame), so their product bounds every frame decoded. None when the bytes are no
    AVIF or HEIF, hold no AV1 sequence header, or need more than `MAX_STEPS` steps to read (see
    `frame_size_conflict`).
    """
    return check_frames(data)[1]


def frame_size_conflict(data: bytes) -> str | None:
    """Why an AV1 image a decoder reads may code a larger frame than its container declares (`ispe` for an item,
    `tkhd` for a track), or None.

    The decoder would decode the larger frame, which a pixel limit on the declared size never saw, and scale it
    down. A file too complex to check (more than `MAX_STEPS` steps) is named too: unchecked, it could hide one.
    """
    return check_frames(data)[0]


def check_frames(data: bytes) -> tuple[str | None, tuple[int, int] | None]:
    """`frame_size_conflict` and `coded_size` from one read of the file, as the pipeline needs both."""
    try:
        images = _images(data)
    except _ExhaustedError:
        return (
            f"{accepted_container(data)} needs more than {MAX_STEPS} steps (boxes, item references and "
            "locations, AV1 OBUs) to read its frame sizes: they cannot be checked against its declared size"
        ), None
    frames = [image.coded for image in images if image.coded is not None]
    coded = (max(width for width, _ in frames), max(height for _, height in frames)) if frames else None
    for image in images:
        for width, height in image.declared:
            if image.coded is not None and (image.coded[0] > width or image.coded[1] > height):
                coded_width, coded_height = image.coded
                return (
                    f"{accepted_container(data)} {image.name}: {image.declared_by} says {width}x{height} "
                    f"but the AV1 frame is {coded_width}x{coded_height}"
                ), coded
    return None, coded
