"""Bounded decoding: ``decode_image(..., max_side=...)`` for encoders that need few pixels.

What must hold: the result is never larger than asked, a JPEG is decoded at a reduced
scale by the decoder itself (so the full frame is never built), everything the plain
decode guarantees (limits, orientation, modes, first frame) still holds, and the
encoders see practically the same picture as from a full decode.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps
from pydantic import ValidationError

from mmsearch.config import Settings
from mmsearch.datasets.photos import photo_like
from mmsearch.encoders import ocr
from mmsearch.encoders.hashes import hamming, image_hashes
from mmsearch.encoders.visual import VisualEncoder
from mmsearch.errors import ImageError
from mmsearch.media.images import (
    ImageLimits,
    bounded_size,
    decode_image,
    load_image,
    request_draft,
)

ORIENTATION = 0x0112


def _photo(size: tuple[int, int], seed: int) -> Image.Image:
    return photo_like(size, seed)


def _jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **options)
    return buffer.getvalue()


def _pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    """One multi-band pixel as a tuple (``getpixel`` is typed for every mode at once)."""
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def large_photos() -> list[bytes]:
    """Three 12-megapixel photo-like JPEGs (4000x3000), made once for the module."""
    return [_jpeg(_photo((4000, 3000), seed)) for seed in range(3)]


# --- size arithmetic --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "max_side", "expected"),
    [
        ((7360, 4912), 1600, (1600, 1068)),
        ((4912, 7360), 1600, (1068, 1600)),
        ((4000, 3000), 1024, (1024, 768)),
        ((3000, 3000), 64, (64, 64)),
        ((10_000, 3), 100, (100, 1)),  # never a zero-pixel side
        ((1600, 1200), 1600, (1600, 1200)),  # within the bound: unchanged
        ((20, 10), 1600, (20, 10)),  # never enlarged
    ],
)
def test_bounded_size(size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    assert bounded_size(size, max_side) == expected


# --- the decoder really decodes less --------------------------------------------------


def test_request_draft_shrinks_a_jpeg_before_its_pixels_are_loaded() -> None:
    data = _jpeg(_photo((2000, 1500), seed=7))
    with Image.open(io.BytesIO(data)) as image:
        target = bounded_size(image.size, 240)
        assert target == (240, 180)
        request_draft(image, target)
        # 2000 // 240 = 8: the decoder works at 1/8 scale, and the size says so before load.
        assert image.size == (250, 188)
        assert image.size[0] >= target[0] and image.size[1] >= target[1]
        image.load()
        assert image.size == (250, 188)


def test_request_draft_never_goes_below_the_target() -> None:
    data = _jpeg(_photo((1000, 700), seed=8))
    for max_side in (64, 100, 125, 126, 250, 251, 499, 500, 999):
        with Image.open(io.BytesIO(data)) as image:
            target = bounded_size(image.size, max_side)
            request_draft(image, target)
            assert image.size[0] >= target[0] and image.size[1] >= target[1], max_side
            assert max(image.size) >= max_side


def test_request_draft_is_ignored_by_formats_without_one() -> None:
    with Image.open(io.BytesIO(_png(_photo((400, 300), seed=9)))) as image:
        request_draft(image, (40, 30))
        assert image.size == (400, 300)


_RSS_PROBE = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from mmsearch.media.images import decode_image

    def high_water():
        # VmHWM belongs to this process's own address space; ru_maxrss would also carry
        # the parent's peak over from the fork that started this interpreter.
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024

    data = Path(sys.argv[1]).read_bytes()
    max_side = int(sys.argv[2]) or None
    before = high_water()
    image = decode_image(data, source="probe.jpg", max_side=max_side)
    print(json.dumps({"size": list(image.size), "growth": high_water() - before}))
    """
)


def _peak_growth(path: Path, max_side: int | None) -> tuple[tuple[int, int], int]:
    """Decode in a fresh interpreter and return the result size and peak-RSS growth."""
    completed = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, str(path), str(max_side or 0)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(completed.stdout)
    width, height = result["size"]
    return (int(width), int(height)), int(result["growth"])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_bounded_jpeg_decode_never_builds_the_full_frame(tmp_path: Path) -> None:
    # 24 megapixels: Pillow holds RGB as 4 bytes a pixel, so one full frame is 96 MB.
    path = tmp_path / "big.jpg"
    path.write_bytes(_jpeg(_photo((6000, 4000), seed=3)))
    full_frame = 6000 * 4000 * 4

    size, growth = _peak_growth(path, None)
    assert size == (6000, 4000)
    # The control: a full decode does show up in the peak, so the probe can see one.
    assert growth > full_frame * 0.9

    size, growth = _peak_growth(path, 512)
    assert size == (512, 341)
    # Decoded at 1/8 scale (750x500), it needs a few MB; a quarter frame leaves room for
    # allocator noise while still failing if the full frame was ever built.
    assert growth < full_frame / 4


# --- what the plain decode guarantees still holds ------------------------------------


def test_within_max_side_is_bit_identical_to_a_plain_decode() -> None:
    cases = [
        _jpeg(_photo((640, 480), seed=1)),
        _png(_photo((640, 480), seed=2)),
        _png(Image.new("RGBA", (300, 200), (10, 20, 30, 40))),
    ]
    for data in cases:
        plain = decode_image(data, source="x")
        for max_side in (640, 641, 5000):
            bounded = decode_image(data, source="x", max_side=max_side)
            assert bounded.mode == plain.mode
            assert bounded.size == plain.size
            assert bounded.tobytes() == plain.tobytes()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_bounded_decode_size_per_format(fmt: str) -> None:
    buffer = io.BytesIO()
    _photo((1500, 1000), seed=4).save(buffer, format=fmt)
    image = decode_image(buffer.getvalue(), source=f"x.{fmt.lower()}", max_side=300)
    assert image.size == (300, 200)
    assert image.mode == "RGB"


def test_bounded_decode_matches_a_resized_full_decode() -> None:
    # The reduced-scale JPEG decode plus the final resize must show the same picture as
    # resizing the full decode; only the last few grey levels may differ.
    data = _jpeg(_photo((3000, 2000), seed=5))
    bounded = decode_image(data, source="x.jpg", max_side=500)
    reference = decode_image(data, source="x.jpg").resize(bounded.size, Image.Resampling.LANCZOS)
    difference = np.abs(np.asarray(bounded, np.int16) - np.asarray(reference, np.int16))
    assert difference.mean() < 2.0


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_survives_a_reduced_scale_decode(orientation: int) -> None:
    # Stored 1600x800 with a red left half and a blue right half; a reduced-scale decode
    # followed by the rotation must look like the full decode rotated, then resized.
    stored = Image.new("RGB", (1600, 800), (220, 30, 30))
    stored.paste((30, 30, 220), (800, 0, 1600, 800))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    data = _jpeg(stored, exif=exif)

    bounded = decode_image(data, source="rotated.jpg", max_side=200)
    with Image.open(io.BytesIO(data)) as opened:
        upright = ImageOps.exif_transpose(opened)
    expected_size = bounded_size(upright.size, 200)
    assert bounded.size == expected_size
    assert bounded.mode == "RGB"
    reference = upright.resize(expected_size, Image.Resampling.LANCZOS)
    difference = np.abs(np.asarray(bounded, np.int16) - np.asarray(reference, np.int16))
    assert np.median(difference) <= 3
    # The two halves are where the rotation puts them, not where they were stored.
    width, height = bounded.size
    corner = bounded.getpixel((width // 8, height // 8))
    assert corner == pytest.approx(reference.getpixel((width // 8, height // 8)), abs=12)


def test_png_with_alpha_stays_rgba_and_keeps_its_transparency() -> None:
    image = Image.new("RGBA", (2000, 1000), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((500, 0, 1500, 1000), fill=(200, 40, 40, 255))
    decoded = decode_image(_png(image), source="cutout.png", max_side=400)
    assert decoded.mode == "RGBA"
    assert decoded.size == (400, 200)
    assert _pixel(decoded, (5, 5))[3] == 0
    centre = _pixel(decoded, (200, 100))
    assert centre[3] == 255
    # Premultiplied resizing: no black from the transparent pixels bleeds into the edge.
    assert centre[:3] == pytest.approx((200, 40, 40), abs=2)


def test_palette_gif_is_bounded_on_its_first_frame() -> None:
    frames = [Image.new("RGB", (1000, 500), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = decode_image(buffer.getvalue(), source="anim.gif", max_side=100)
    assert decoded.size == (100, 50)
    assert decoded.mode in {"RGB", "RGBA"}
    assert decoded.convert("RGB").getpixel((50, 25)) == (255, 0, 0)


def test_cmyk_and_greyscale_jpegs_become_rgb_when_bounded() -> None:
    cmyk = _jpeg(Image.new("CMYK", (1200, 800), (0, 255, 255, 0)))
    decoded = decode_image(cmyk, source="cmyk.jpg", max_side=120)
    assert (decoded.mode, decoded.size) == ("RGB", (120, 80))
    red, green, blue = _pixel(decoded, (60, 40))
    assert red > 200 and green < 60 and blue < 60

    grey = _jpeg(Image.new("L", (1200, 800), 90))
    decoded = decode_image(grey, source="grey.jpg", max_side=120)
    assert (decoded.mode, decoded.size) == ("RGB", (120, 80))
    assert decoded.getpixel((60, 40)) == pytest.approx((90, 90, 90), abs=2)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_bomb_is_refused_on_its_declared_size_even_when_bounded(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("L", (2000, 2000), 0).save(buffer, format=fmt)
    with pytest.raises(ImageError, match=r"2000x2000 pixels, over the limit of 1000000"):
        decode_image(
            buffer.getvalue(),
            source=f"bomb.{fmt.lower()}",
            limits=ImageLimits(max_pixels=1_000_000),
            max_side=64,
        )


def test_pillow_bomb_header_is_refused_when_bounded() -> None:
    side = int((Image.MAX_IMAGE_PIXELS or 0) ** 0.5) + 10
    data = _png(Image.new("1", (1, 1)))
    header = b"IHDR" + side.to_bytes(4, "big") + side.to_bytes(4, "big") + data[24:29]
    data = data[:12] + header + zlib.crc32(header).to_bytes(4, "big") + data[33:]
    limits = ImageLimits(max_pixels=side * side * 2)
    with pytest.raises(ImageError, match="too large to decode safely"):
        decode_image(data, source="header.png", limits=limits, max_side=64)


def test_truncated_jpeg_is_still_an_image_error_when_bounded() -> None:
    data = _jpeg(_photo((1200, 900), seed=6))
    with pytest.raises(ImageError, match=r"cut\.jpg: cannot decode image"):
        decode_image(data[: len(data) // 2], source="cut.jpg", max_side=100)


def test_max_side_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_side"):
        decode_image(b"irrelevant", source="x", max_side=0)


def test_load_image_passes_max_side(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(_jpeg(_photo((1200, 900), seed=10)))
    assert load_image(path, max_side=300).size == (300, 225)
    assert load_image(path).size == (1200, 900)


# --- the encoders see the same picture ----------------------------------------------


def test_visual_vector_and_phash_match_a_full_decode(large_photos: list[bytes]) -> None:
    max_side = Settings().ingest_image_max_side
    encoder = VisualEncoder()
    for data in large_photos:
        full = decode_image(data, source="photo.jpg")
        bounded = decode_image(data, source="photo.jpg", max_side=max_side)
        assert max(bounded.size) == max_side
        vectors = encoder.encode_images([full, bounded])
        assert float(vectors[0] @ vectors[1]) > 0.99
        full_hashes, bounded_hashes = image_hashes(full), image_hashes(bounded)
        assert hamming(full_hashes.phash, bounded_hashes.phash) <= 2
        assert hamming(full_hashes.dhash, bounded_hashes.dhash) <= 2


def test_even_a_small_bound_keeps_the_visual_vector(large_photos: list[bytes]) -> None:
    # 256 px is the smallest size anything but OCR is fed from, with margin for CLIP.
    encoder = VisualEncoder()
    for data in large_photos:
        full = decode_image(data, source="photo.jpg")
        bounded = decode_image(data, source="photo.jpg", max_side=256)
        vectors = encoder.encode_images([full, bounded])
        assert float(vectors[0] @ vectors[1]) > 0.99


# --- the setting --------------------------------------------------------------------


def test_ingest_image_max_side_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    default = Settings().ingest_image_max_side
    # OCR shrinks to its own maximum anyway; bounding the decode below it would cost detail.
    assert default >= ocr.MAX_SIDE
    monkeypatch.setenv("MMSEARCH_INGEST_IMAGE_MAX_SIDE", "512")
    assert Settings().ingest_image_max_side == 512
    monkeypatch.setenv("MMSEARCH_INGEST_IMAGE_MAX_SIDE", "63")
    with pytest.raises(ValidationError):
        Settings()
