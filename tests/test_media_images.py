from __future__ import annotations

import io
import os
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from mmsearch.errors import ImageError
from mmsearch.media.images import (
    ImageLimits,
    decode_image,
    load_image,
    read_image_bytes,
    to_rgb,
)


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _noisy_rgb(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    # Noise does not compress, so cutting the file really cuts pixel data.
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, mode="RGB")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_load_valid_png(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.png", _png_bytes(_noisy_rgb()))
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == (64, 48)


def test_zero_byte_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.png", b"")
    with pytest.raises(ImageError, match=r"empty\.png.*empty"):
        load_image(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.png"
    with pytest.raises(ImageError, match=r"nowhere\.png.*does not exist"):
        read_image_bytes(path)


def test_directory_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="not a regular file"):
        read_image_bytes(tmp_path)


def test_file_over_max_bytes(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.png", _png_bytes(_noisy_rgb()))
    limit = os.path.getsize(path) - 1
    with pytest.raises(ImageError, match=rf"big\.png.*over the limit of {limit}"):
        read_image_bytes(path, ImageLimits(max_bytes=limit))


def test_truncated_png(tmp_path: Path) -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = _png_bytes(_noisy_rgb((128, 128)))
    path = _write(tmp_path / "cut.png", data[: len(data) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: cannot decode image"):
        load_image(path)


def test_truncated_jpeg() -> None:
    buffer = io.BytesIO()
    _noisy_rgb((128, 128)).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    with pytest.raises(ImageError, match="cannot decode image"):
        decode_image(data[: len(data) // 2], source="https://example.com/cut.jpg")


def test_random_bytes() -> None:
    data = np.random.default_rng(1).integers(0, 256, size=4096, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError, match=r"noise\.bin: cannot decode image"):
        decode_image(data, source="noise.bin")


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    image = Image.new("L", (2000, 2000), 0)
    path = _write(tmp_path / "bomb.png", _png_bytes(image))
    with pytest.raises(ImageError, match=r"2000x2000 pixels, over the limit of 1000000"):
        load_image(path, ImageLimits(max_pixels=1_000_000))


def test_pillow_bomb_warning_becomes_image_error() -> None:
    # A header claiming a canvas beyond Pillow's own safety limit: tiny file, huge image.
    side = int((Image.MAX_IMAGE_PIXELS or 0) ** 0.5) + 10
    data = _png_bytes(Image.new("1", (1, 1)))
    header = b"IHDR" + side.to_bytes(4, "big") + side.to_bytes(4, "big") + data[24:29]
    data = data[:12] + header + zlib.crc32(header).to_bytes(4, "big") + data[33:]
    limits = ImageLimits(max_pixels=side * side * 2)
    with pytest.raises(ImageError, match="too large to decode safely"):
        decode_image(data, source="header.png", limits=limits)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    _noisy_rgb((40, 20)).save(buffer, format="JPEG", exif=exif)
    image = decode_image(buffer.getvalue(), source="rotated.jpg")
    assert image.size == (20, 40)
    assert image.mode == "RGB"


def test_palette_with_transparency_becomes_rgba() -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    image.paste(1, (0, 0, 4, 8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", transparency=0)
    decoded = decode_image(buffer.getvalue(), source="palette.png")
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((0, 0)) == (0, 0, 255, 255)
    assert decoded.getpixel((7, 0))[3] == 0


def test_palette_without_transparency_becomes_rgb() -> None:
    image = _noisy_rgb().convert("P")
    decoded = decode_image(_png_bytes(image), source="palette.png")
    assert decoded.mode == "RGB"


def test_greyscale_and_bilevel_become_rgb() -> None:
    for mode in ("L", "1"):
        decoded = decode_image(_png_bytes(Image.new(mode, (4, 4), 1)), source=f"{mode}.png")
        assert decoded.mode == "RGB"


def test_greyscale_with_alpha_becomes_rgba() -> None:
    decoded = decode_image(_png_bytes(Image.new("LA", (4, 4), (128, 10))), source="la.png")
    assert decoded.mode == "RGBA"
    assert decoded.getpixel((0, 0)) == (128, 128, 128, 10)


def test_cmyk_jpeg_becomes_rgb() -> None:
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buffer, format="JPEG", quality=95)
    decoded = decode_image(buffer.getvalue(), source="cmyk.jpg")
    assert decoded.mode == "RGB"
    red, green, blue = decoded.getpixel((8, 8))
    assert red > 200 and green < 60 and blue < 60


def test_16bit_greyscale_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 256, dtype=np.float64).round().astype(np.uint16)
    image = Image.fromarray(np.tile(ramp, (4, 1)))
    assert image.mode == "I;16"
    decoded = decode_image(_png_bytes(image), source="deep.png")
    assert decoded.mode == "RGB"
    values = np.asarray(decoded)[..., 0]
    assert values.min() == 0
    assert values.max() == 255
    assert len(np.unique(values)) > 200
    assert abs(int(values[0, 128]) - 128) <= 1


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (10, 10), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = decode_image(buffer.getvalue(), source="anim.gif")
    assert decoded.mode in {"RGB", "RGBA"}
    assert decoded.convert("RGB").getpixel((5, 5)) == (255, 0, 0)


def test_decoded_image_does_not_depend_on_the_input_buffer() -> None:
    data = bytearray(_png_bytes(_noisy_rgb()))
    decoded = decode_image(bytes(data), source="x.png")
    before = np.asarray(decoded).copy()
    data[:] = b"\0" * len(data)
    assert np.array_equal(np.asarray(decoded), before)


def test_to_rgb_composites_transparency_on_white() -> None:
    image = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))
    image.putpixel((1, 0), (0, 0, 0, 128))
    flat = to_rgb(image)
    assert flat.mode == "RGB"
    assert flat.getpixel((0, 0)) == (255, 0, 0)
    assert flat.getpixel((3, 1)) == (255, 255, 255)
    grey = flat.getpixel((1, 0))
    assert all(120 <= channel <= 135 for channel in grey)


def test_to_rgb_returns_rgb_unchanged() -> None:
    image = _noisy_rgb()
    assert to_rgb(image) is image


def test_to_rgb_accepts_other_modes() -> None:
    assert to_rgb(Image.new("L", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)
