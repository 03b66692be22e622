"""AV1 frame sizes from AVIF sequence headers: exact for real files, lies about them found, hostile bytes harmless."""

from __future__ import annotations

import io
import itertools
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from PIL import Image

from handler import av1
from handler.pipeline import Rejected, render
from handler.variants import PRESETS
from tests.conftest import HOSTILE_DIR, PHOTOS_DIR

ALPHA_URN = b"urn:mpeg:mpegB:cicp:systems:auxiliary:alpha\0"


def pillow_avif(size: tuple[int, int], mode: str = "RGB", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "#c83c28").save(buffer, "AVIF", speed=10, **options)
    return buffer.getvalue()


def with_ispe(data: bytes, width: int, height: int) -> bytes:
    """Every `ispe` in the file rewritten to declare width x height, as the reviewer's bombs were made."""
    patched, at = bytearray(data), data.find(b"ispe")
    while at != -1:
        patched[at + 8 : at + 16] = struct.pack(">II", width, height)
        at = data.find(b"ispe", at + 1)
    return bytes(patched)


# --- a minimal AVIF writer: items from Pillow's AV1 data, arranged as the test needs ------------------------


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, bytes([version]), flags.to_bytes(3, "big"), *payload)


def ispe(width: int, height: int) -> bytes:
    return full_box(b"ispe", 0, 0, struct.pack(">II", width, height))


def av1c(config_obus: bytes = b"") -> bytes:
    return box(b"av1C", b"\x81\x00\x0c\x00", config_obus)  # profile 0, level 0, 8-bit 4:2:0


def obu(kind: int, payload: bytes, *, extension: bool = False, sized: bool = True) -> bytes:
    header = bytes([kind << 3 | extension << 2 | sized << 1]) + (b"\x00" if extension else b"")
    size = bytearray()
    length = len(payload)
    while sized:
        size.append(length & 0x7F | (0x80 if length > 0x7F else 0))
        length >>= 7
        sized = length > 0
    return header + bytes(size) + payload


class BitWriter:
    def __init__(self) -> None:
        self.value, self.bits = 0, 0

    def put(self, value: int, n: int) -> BitWriter:
        self.value, self.bits = self.value << n | value, self.bits + n
        return self

    def uvlc(self, value: int) -> BitWriter:
        zeros = (value + 1).bit_length() - 1
        return self.put(0, zeros).put(1, 1).put(value + 1 - (1 << zeros), zeros)

    def bytes(self) -> bytes:
        self.put(1, 1)  # trailing_one_bit, then zeros to the byte
        pad = -self.bits % 8
        return (self.value << pad).to_bytes((self.bits + pad) // 8, "big")


def sequence_header(
    width: int,
    height: int,
    *,
    reduced: bool = True,
    timing: bool = False,
    decoder_model: bool = False,
    display_delay: bool = False,
    operating_points: int = 1,
) -> bytes:
    """A sequence header OBU's payload, up to the frame size (AV1 spec 5.5.1); what follows is not read."""
    bits = BitWriter().put(0, 3).put(reduced, 1).put(reduced, 1)
    if reduced:
        bits.put(31, 5)
    else:
        bits.put(timing, 1)
        if timing:
            bits.put(1001, 32).put(60000, 32).put(1, 1).uvlc(37).put(decoder_model, 1)
            if decoder_model:
                bits.put(9, 5).put(90000, 32).put(31, 5).put(31, 5)  # 10-bit buffer delays
        bits.put(display_delay, 1).put(operating_points - 1, 5)
        for index in range(operating_points):
            level = 13 if index % 2 else 5  # above 7: a tier bit follows
            bits.put(0x101 << index % 4, 12).put(level, 5)
            if level > 7:
                bits.put(1, 1)
            if decoder_model:
                bits.put(1, 1).put(777, 10).put(333, 10).put(1, 1)
            if display_delay:
                bits.put(1, 1).put(9, 4)
    width_bits, height_bits = (width - 1).bit_length() or 1, (height - 1).bit_length() or 1
    bits.put(width_bits - 1, 4).put(height_bits - 1, 4).put(width - 1, width_bits).put(height - 1, height_bits)
    return bits.bytes()


@dataclass
class Item:
    id: int
    type: bytes
    data: bytes = b""
    properties: list[bytes] = field(default_factory=list)
    in_idat: bool = False
    extents: int = 1


def build(items: list[Item], primary: int, references: Sequence[tuple[bytes, int, list[int]]] = ()) -> bytes:
    """An AVIF of `items` (iloc version 1: method 0 from `mdat`, or 1 from `idat`), `references` in `iref`."""
    properties = [prop for item in items for prop in item.properties]
    associations, index = b"", 1
    for item in items:
        indices = range(index, index + len(item.properties))
        associations += struct.pack(">HB", item.id, len(item.properties)) + b"".join(
            struct.pack(">H", 0x8000 | i) for i in indices
        )
        index += len(item.properties)
    iprp = box(b"iprp", box(b"ipco", *properties), full_box(b"ipma", 0, 1, struct.pack(">I", len(items)), associations))
    infe = [full_box(b"infe", 2, 0, struct.pack(">HH4s", item.id, 0, item.type), b"\0") for item in items]
    iinf = full_box(b"iinf", 0, 0, struct.pack(">H", len(items)), *infe)
    iref = full_box(b"iref", 0, 0, *(box(k, struct.pack(f">HH{len(t)}H", s, len(t), *t)) for k, s, t in references))
    iref = iref if references else b""
    idat_payload = b"".join(item.data for item in items if item.in_idat)
    mdat_payload = b"".join(item.data for item in items if not item.in_idat)

    def meta(mdat_at: int) -> bytes:
        entries, offsets = b"", {True: 0, False: mdat_at}  # next free offset in idat, in the file
        for item in items:
            pos = offsets[item.in_idat]
            cuts = [len(item.data) * i // item.extents for i in range(item.extents + 1)]
            extents = b"".join(struct.pack(">II", pos + a, b - a) for a, b in itertools.pairwise(cuts))
            entries += struct.pack(">HHHH", item.id, int(item.in_idat), 0, item.extents) + extents
            offsets[item.in_idat] = pos + len(item.data)
        iloc = full_box(b"iloc", 1, 0, b"\x44\x00", struct.pack(">H", len(items)), entries)
        hdlr = full_box(b"hdlr", 0, 0, b"\0" * 4, b"pict", b"\0" * 12, b"\0")
        pitm = full_box(b"pitm", 0, 0, struct.pack(">H", primary))
        idat = box(b"idat", idat_payload) if idat_payload else b""  # libavif refuses an empty one
        return full_box(b"meta", 0, 0, hdlr, pitm, iloc, iinf, iref, iprp, idat)

    ftyp = box(b"ftyp", b"avif", b"\0\0\0\0", b"avifmif1miaf")
    head = len(ftyp) + len(meta(0)) + 8
    return ftyp + meta(head) + box(b"mdat", mdat_payload)


def colour_item(size: tuple[int, int]) -> tuple[bytes, bytes]:
    """(av1C property, item data) of a Pillow-made AVIF of one colour item: `mdat` holds just its data."""
    data = pillow_avif(size)
    at = data.index(b"av1C") - 4
    av1c_box = data[at : at + int.from_bytes(data[at : at + 4], "big")]
    mdat = data.index(b"mdat") - 4
    return av1c_box, data[mdat + 8 : mdat + int.from_bytes(data[mdat : mdat + 4], "big")]


def grid(
    tile_size: tuple[int, int],
    columns: int,
    rows: int,
    *,
    colour_ispe: tuple[int, int] | None = None,
    alpha_ispe: tuple[int, int] | None = None,
) -> bytes:
    """A grid of Pillow-made tiles (items 10...), its alpha a grid too (tiles 100...), as libavif reads them."""
    av1c_box, tile_data = colour_item(tile_size)
    width, height = tile_size[0] * columns, tile_size[1] * rows
    count = columns * rows
    colour_props = [av1c_box, ispe(*(colour_ispe or tile_size))]
    alpha_props = [av1c_box, ispe(*(alpha_ispe or tile_size))]
    colour = [Item(10 + i, b"av01", tile_data, colour_props) for i in range(count)]
    alpha = [Item(100 + i, b"av01", tile_data, alpha_props) for i in range(count)]
    layout = struct.pack(">BBBBHH", 0, 0, rows - 1, columns - 1, width, height)
    items = [
        Item(1, b"grid", layout, [ispe(width, height)], in_idat=True),
        Item(2, b"grid", layout, [ispe(width, height), full_box(b"auxC", 0, 0, ALPHA_URN)], in_idat=True),
        *colour,
        *alpha,
    ]
    refs = [(b"dimg", 1, [i.id for i in colour]), (b"dimg", 2, [i.id for i in alpha]), (b"auxl", 2, [1])]
    return build(items, primary=1, references=refs)


# --- real files: exact sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (37, 1001), (1001, 37), (4000, 3), (3, 4000), (640, 480)])
@pytest.mark.parametrize(("mode", "options"), [("RGB", {}), ("RGBA", {}), ("L", {}), ("RGB", {"subsampling": "4:4:4"})])
def test_pillow_avif_coded_size_is_exact(size: tuple[int, int], mode: str, options: dict[str, object]) -> None:
    data = pillow_avif(size, mode, **options)
    assert av1.coded_size(data) == size
    assert av1.frame_size_conflict(data) is None


def test_alpha_item_is_read_too() -> None:
    """Alpha is an `auxl` item with its own sequence header (Pillow's share the colour item's `ispe`)."""
    av1c_box, colour = colour_item((48, 40))
    alpha = obu(1, sequence_header(4800, 4000))
    alpha_props = [av1c(), ispe(48, 40), full_box(b"auxC", 0, 0, ALPHA_URN)]
    items = [Item(1, b"av01", colour, [av1c_box, ispe(48, 40)]), Item(2, b"av01", alpha, alpha_props)]
    data = build(items, primary=1, references=[(b"auxl", 2, [1])])
    assert av1.coded_size(data) == (4800, 4000)
    assert av1.frame_size_conflict(data) == "AVIF item 2: ispe says 48x40 but the AV1 frame is 4800x4000"


def test_an_image_without_ispe_still_counts() -> None:
    """Nothing to conflict with (libavif refuses such a colour item, but not always such an alpha): the coded size
    is what the pixel limit must count."""
    av1c_box, colour = colour_item((48, 40))
    alpha = obu(1, sequence_header(16384, 16384))
    items = [Item(1, b"av01", colour, [av1c_box, ispe(48, 40)]), Item(2, b"av01", alpha, [av1c()])]
    data = build(items, primary=1, references=[(b"auxl", 2, [1])])
    assert av1.frame_size_conflict(data) is None
    assert av1.coded_size(data) == (16384, 16384)


def test_shared_hostile_corpus_avif_is_honest() -> None:
    data = (HOSTILE_DIR / "pillow_avif_hopper.avif").read_bytes()
    assert av1.coded_size(data) == (128, 128)
    assert av1.frame_size_conflict(data) is None


def test_image_sequence_first_frame_is_read() -> None:
    """An `avis` is decoded from its track, scaled to `tkhd`'s size: libaom writes full sequence headers there."""
    frames = [Image.new("RGB", (200, 120), (i * 60, 0, 0)) for i in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "AVIF", save_all=True, append_images=frames[1:], speed=10)
    data = buffer.getvalue()
    assert av1.coded_size(data) == (200, 120)
    assert av1.frame_size_conflict(data) is None
    tkhd = data.index(b"tkhd") - 4
    end = tkhd + int.from_bytes(data[tkhd : tkhd + 4], "big")
    lying = data[: end - 8] + struct.pack(">II", 64 << 16, 48 << 16) + data[end:]
    with Image.open(io.BytesIO(lying)) as image:
        assert image.size == (64, 48)  # what the pipeline's pixel limit would have seen
    assert av1.frame_size_conflict(lying) == "AVIF track 1: tkhd says 64x48 but the AV1 frame is 200x120"


# --- lies ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_ispe_smaller_than_the_frame_is_a_conflict(mode: str) -> None:
    """The reviewer's bomb, at a size a test can encode: every `ispe` says 64x48 over a 640x480 frame."""
    data = with_ispe(pillow_avif((640, 480), mode), 64, 48)
    assert av1.frame_size_conflict(data) == "AVIF item 1: ispe says 64x48 but the AV1 frame is 640x480"
    assert av1.coded_size(data) == (640, 480)


@pytest.mark.parametrize(("declared", "conflict"), [((640, 480), False), ((641, 480), False), ((639, 480), True)])
def test_only_a_frame_larger_than_ispe_conflicts(declared: tuple[int, int], conflict: bool) -> None:
    """A larger `ispe` is left to the decoder (libavif refuses to scale up); the pixel limit already counted it."""
    data = with_ispe(pillow_avif((640, 480)), *declared)
    assert (av1.frame_size_conflict(data) is not None) is conflict


def test_16384_square_frame_behind_a_64x48_ispe() -> None:
    """The reviewer's 5.4 KB, 1.34 GB file, its sequence header synthesised rather than encoded."""
    header = obu(2, b"") + obu(1, sequence_header(16384, 16384)) + obu(6, b"\0" * 64)
    data = build([Item(1, b"av01", header, [av1c(), ispe(64, 48)])], primary=1)
    assert av1.coded_size(data) == (16384, 16384)
    assert av1.frame_size_conflict(data) == "AVIF item 1: ispe says 64x48 but the AV1 frame is 16384x16384"


def test_a_second_sequence_header_counts() -> None:
    """A small header first, a large one before the frame: the decoder would follow the second."""
    obus = obu(1, sequence_header(64, 48)) + obu(15, b"pad") + obu(1, sequence_header(8000, 6000)) + obu(6, b"\0")
    data = build([Item(1, b"av01", obus, [av1c(), ispe(64, 48)])], primary=1)
    assert av1.coded_size(data) == (8000, 6000)
    assert av1.frame_size_conflict(data) == "AVIF item 1: ispe says 64x48 but the AV1 frame is 8000x6000"


def test_config_obus_in_av1c_count() -> None:
    """`av1C` may carry the sequence header too (configOBUs); it must match the item's, so either lie counts."""
    data = build([Item(1, b"av01", b"", [av1c(obu(1, sequence_header(4000, 3000))), ispe(400, 300)])], primary=1)
    assert av1.coded_size(data) == (4000, 3000)
    assert av1.frame_size_conflict(data) == "AVIF item 1: ispe says 400x300 but the AV1 frame is 4000x3000"


@pytest.mark.parametrize("extension", [False, True])
@pytest.mark.parametrize("sized", [False, True])
def test_obu_header_forms(extension: bool, sized: bool) -> None:
    """An extension byte, and a last OBU without a size field (it runs to the end of the item)."""
    obus = obu(2, b"") + obu(1, sequence_header(300, 200), extension=extension, sized=sized)
    data = build([Item(1, b"av01", obus, [av1c(), ispe(300, 200)])], primary=1)
    assert av1.coded_size(data) == (300, 200)


@pytest.mark.parametrize(
    "options",
    [
        {"reduced": False},
        {"reduced": False, "timing": True},
        {"reduced": False, "timing": True, "decoder_model": True},
        {"reduced": False, "display_delay": True, "operating_points": 3},
        {"reduced": False, "timing": True, "decoder_model": True, "display_delay": True, "operating_points": 32},
    ],
)
@pytest.mark.parametrize("size", [(1, 1), (65536, 65536), (12345, 17)])
def test_full_sequence_headers(options: dict[str, object], size: tuple[int, int]) -> None:
    """Timing info, decoder models and operating points are walked past to the frame size (AV1 spec 5.5)."""
    assert av1.max_frame_size(sequence_header(*size, **options)) == size


def test_cut_sequence_header_gives_no_size() -> None:
    header = sequence_header(4000, 3000, reduced=False, timing=True, decoder_model=True, operating_points=8)
    assert all(av1.max_frame_size(header[:cut]) is None for cut in range(len(header) - 4))


# --- container layouts ----------------------------------------------------------------------------------------


def test_grid_tiles_and_alpha_tiles_are_read() -> None:
    data = grid((64, 64), columns=3, rows=2)
    with Image.open(io.BytesIO(data)) as image:  # the writer makes what libavif decodes
        image.load()
        assert (image.size, image.mode) == ((192, 128), "RGBA")
    assert av1.coded_size(data) == (64, 64)
    assert av1.frame_size_conflict(data) is None


@pytest.mark.parametrize(("lie", "item"), [({"colour_ispe": (8, 8)}, 10), ({"alpha_ispe": (8, 8)}, 100)])
def test_grid_tile_lying_about_its_size(lie: dict[str, tuple[int, int]], item: int) -> None:
    data = grid((64, 64), columns=2, rows=2, **lie)
    assert av1.frame_size_conflict(data) == f"AVIF item {item}: ispe says 8x8 but the AV1 frame is 64x64"


@pytest.mark.parametrize(("in_idat", "extents"), [(True, 1), (False, 3), (True, 4), (False, 40)])
def test_item_data_in_idat_and_in_several_extents(in_idat: bool, extents: int) -> None:
    av1c_box, data = colour_item((333, 222))
    avif = build([Item(1, b"av01", data, [av1c_box, ispe(333, 222)], in_idat=in_idat, extents=extents)], primary=1)
    with Image.open(io.BytesIO(avif)) as image:
        image.load()
        assert image.size == (333, 222)
    assert av1.coded_size(avif) == (333, 222)


def test_items_the_decoder_does_not_read_are_ignored() -> None:
    """A thumbnail, or an item of another codec, may be anything: only the primary image and its alpha count."""
    av1c_box, data = colour_item((64, 48))
    huge = obu(1, sequence_header(16384, 16384))
    items = [
        Item(1, b"av01", data, [av1c_box, ispe(64, 48)]),
        Item(2, b"av01", huge, [av1c(), ispe(16, 16)]),  # a thumbnail (`thmb`), lying
        Item(3, b"hvc1", huge, [ispe(16, 16)]),
    ]
    avif = build(items, primary=1, references=[(b"thmb", 2, [1])])
    assert av1.coded_size(avif) == (64, 48)
    assert av1.frame_size_conflict(avif) is None


# --- no size to find --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8\xff\xe0" + b"\0" * 100,
        b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
        box(b"ftyp", b"avif", b"\0\0\0\0", b"avifmif1"),
        box(b"ftyp", b"avif", b"\0\0\0\0") + b"\xff" * 64,
        bytes(range(256)) * 4,
        obu(1, sequence_header(16384, 16384)),  # a bare AV1 stream is no AVIF
    ],
)
def test_no_size_outside_avif_items(data: bytes) -> None:
    assert av1.coded_size(data) is None
    assert av1.frame_size_conflict(data) is None


def test_heic_items_are_not_av1() -> None:
    data = (HOSTILE_DIR / "govips_heic-24bit.heic").read_bytes()
    assert av1.coded_size(data) is None
    assert av1.frame_size_conflict(data) is None


def test_item_without_sequence_header() -> None:
    data = build([Item(1, b"av01", obu(2, b"") + obu(6, b"\0" * 32), [av1c(), ispe(64, 48)])], primary=1)
    assert av1.coded_size(data) is None
    assert av1.frame_size_conflict(data) is None


# --- hostile input: bounded, never raising -------------------------------------------------------------------------
# Work is counted in the parser's own steps (`av1.MAX_STEPS` bounds them), never timed: a timed assert fails on a
# busy machine and passes on a fast one whatever the code does.


class StepCounter:
    """Records the steps each upload's walk spends, by standing in for `av1._Budget`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.budgets: list[av1._Budget] = []
        counter = self

        class Recording(av1._Budget):
            def __init__(self) -> None:
                super().__init__()
                counter.budgets.append(self)

        monkeypatch.setattr(av1, "_Budget", Recording)

    def last(self) -> int:
        """Steps the most recent walk spent."""
        return av1.MAX_STEPS - self.budgets[-1].left


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> StepCounter:
    return StepCounter(monkeypatch)


def test_more_obus_than_the_step_limit_cannot_be_checked(steps: StepCounter) -> None:
    """A large header hidden behind `MAX_STEPS` padding OBUs is not skipped over unchecked: the file is named."""
    obus = obu(1, sequence_header(64, 48)) + obu(15, b"") * av1.MAX_STEPS + obu(1, sequence_header(16384, 16384))
    data = build([Item(1, b"av01", obus, [av1c(), ispe(64, 48)])], primary=1)
    conflict = av1.frame_size_conflict(data)
    assert steps.last() == av1.MAX_STEPS + 1, "the walk stops at the first step over the limit"
    assert conflict is not None
    assert "cannot be checked" in conflict
    assert av1.coded_size(data) is None


def test_many_references_and_extents_stay_bounded(steps: StepCounter) -> None:
    """65,533 tile references, the one that exists stored in 65,535 extents: all read well within the step limit,
    one step for each reference and extent (and a few for the boxes), not one per reference per extent."""
    tiles = list(range(2, 65535))
    item = Item(2, b"av01", b"", [av1c(), ispe(64, 48)], extents=65535)
    avif = build([Item(1, b"grid", b"\0" * 8, [ispe(64, 48)]), item], primary=1, references=[(b"dimg", 1, tiles)])
    assert av1.frame_size_conflict(avif) is None
    assert len(tiles) + 65535 <= steps.last() < len(tiles) + 65535 + 100


def mutants(seed_files: list[bytes], count: int, rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(count):
        data = bytearray(rng.choice(seed_files))
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            at = rng.randrange(len(data))
            if action < 0.5:  # a flipped byte
                data[at] = rng.randrange(256)
            elif action < 0.65:  # a flipped bit
                data[at] ^= 1 << rng.randrange(8)
            elif action < 0.8:  # a size or count set to an extreme
                data[at : at + 4] = rng.choice([b"\0\0\0\0", b"\xff\xff\xff\xff", b"\0\0\0\x01", b"\x7f\xff\xff\xff"])
            elif action < 0.9:  # cut short
                del data[at:]
                if not data:
                    data = bytearray(b"\0")
            else:  # bytes inserted
                data[at:at] = rng.randbytes(rng.randint(1, 16))
        out.append(bytes(data))
    return out


def test_fuzzed_avifs_never_raise_and_stay_bounded(steps: StepCounter) -> None:
    """20,000 mutants of real and built files: byte flips, extreme sizes, cuts and insertions."""
    frames = [Image.new("RGB", (40, 30), (i * 80, 0, 0)) for i in range(2)]
    animation = io.BytesIO()
    frames[0].save(animation, "AVIF", save_all=True, append_images=frames[1:], speed=10)
    full_header = obu(1, sequence_header(99, 77, reduced=False, timing=True, decoder_model=True))
    seeds = [
        pillow_avif((37, 21), "RGBA"),
        pillow_avif((40, 30)),
        animation.getvalue(),
        grid((16, 16), columns=2, rows=1),
        build([Item(1, b"av01", full_header, [av1c(), ispe(99, 77)], in_idat=True, extents=2)], primary=1),
    ]
    assert av1.coded_size(seeds[-1]) == (99, 77)
    rng = random.Random(20240611)
    most = 0
    for data in mutants(seeds, 20_000, rng):
        conflict, size = av1.check_frames(data)
        most = max(most, steps.last())
        assert size is None or (1 <= size[0] <= 65536 and 1 <= size[1] <= 65536)
        assert conflict is None or isinstance(conflict, str)
    # Mutants of files with a few dozen parts: a cut or a flipped size may add a box or two, never multiply them.
    assert most < 200  # the seeds take 21-73, the mutants at most 82


def test_cost_on_a_12_megapixel_avif(steps: StepCounter) -> None:
    """Headers only: the 12 MP photo as AVIF (1.2 MB) takes a few dozen steps, whatever its pixel data's size."""
    buffer = io.BytesIO()
    with Image.open(PHOTOS_DIR / "elephants_12mp_4032x3024.jpg") as image:
        image.save(buffer, "AVIF", speed=10)
    data = buffer.getvalue()
    assert av1.coded_size(data) == (4032, 3024)
    assert steps.last() < 50


# --- wired into the pipeline --------------------------------------------------------------------


def test_render_refuses_a_frame_larger_than_its_ispe_before_decoding() -> None:
    """The reviewer's 5.4 KB file took 1.34 GB in libavif; the lie is now refused by its header."""
    with pytest.raises(Rejected) as raised:
        render(with_ispe(pillow_avif((640, 480)), 64, 48), PRESETS["default"])
    assert raised.value.reason == "corrupt"
    assert "ispe says 64x48 but the AV1 frame is 640x480" in raised.value.detail


def test_render_counts_a_coded_frame_without_ispe_against_the_pixel_limit() -> None:
    """An alpha item with no `ispe` has nothing to conflict with, so only its coded size can be counted."""
    av1c_box, colour = colour_item((48, 40))
    alpha = obu(1, sequence_header(16384, 16384))
    items = [Item(1, b"av01", colour, [av1c_box, ispe(48, 40)]), Item(2, b"av01", alpha, [av1c()])]
    data = build(items, primary=1, references=[(b"auxl", 2, [1])])
    with pytest.raises(Rejected) as raised:
        render(data, PRESETS["default"])
    assert raised.value.reason == "too_many_pixels"
    assert "the AV1 frame is 16384x16384" in raised.value.detail
