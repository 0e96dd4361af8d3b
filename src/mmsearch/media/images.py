"""Safe decoding of untrusted images.

Catalog images come from anywhere: a truncated upload, a file that is not an image,
or a tiny file whose header claims a gigapixel canvas must each fail as one
``ImageError`` for that image, never as a crash or an out-of-memory kill of the
whole indexing run. Every image that decodes comes back in one of two modes, RGB
or RGBA, upright according to its EXIF orientation, so encoders need not know about
the long tail of Pillow modes.

Encoders look at far fewer pixels than a camera produces (the visual descriptor
works on 64x64, pHash on 32x32, CLIP on 224x224, OCR on at most 1600 px), yet a
36-megapixel photo decoded at full size holds about 140 MB. ``max_side`` bounds the
decoded size; for JPEG the decoder itself then works at 1/2, 1/4 or 1/8 scale (DCT
scaling), so the full-size frame is never built at all. Other formats (PNG, WebP,
TIFF) can only be decoded at full size; a bounded decode then holds that frame once,
not twice: it is shrunk before the EXIF rotation and freed as soon as the small copy
exists. ``decode_pixels`` says from the header alone how many pixels a decode will
hold at once, so a caller can bound how many run together, and ``release_free_memory``
hands freed heap pages back to the OS after a large decode (glibc keeps them otherwise).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import stat
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
from PIL import Image, ImageOps

from mmsearch.errors import ImageError

# Modes that carry an alpha channel; anything else may still be transparent
# through a ``transparency`` entry in ``Image.info`` (palette or colour key).
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Integer and float greyscale modes whose values do not fit 0..255.
_WIDE_GREY_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
# EXIF orientation -> the transpose that makes the picture upright (as ImageOps does).
_ORIENTATION = 0x0112
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass(frozen=True)
class ImageLimits:
    """Upper bounds that keep one hostile image from exhausting memory."""

    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000


def read_image_bytes(path: Path, limits: ImageLimits = ImageLimits()) -> bytes:
    """Read an image file, refusing anything that cannot be an image we accept.

    The size is checked with ``stat`` first so that a huge file is never read into
    memory just to be rejected.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ImageError(f"{path}: image file does not exist") from None
    except OSError as exc:
        raise ImageError(f"{path}: cannot access image file: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes)")
    if info.st_size > limits.max_bytes:
        raise ImageError(
            f"{path}: image file has {info.st_size} bytes, over the limit of {limits.max_bytes}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read image file: {exc.strerror or exc}") from None
    # The file may have grown between stat and read.
    if len(data) > limits.max_bytes:
        raise ImageError(
            f"{path}: image file has {len(data)} bytes, over the limit of {limits.max_bytes}"
        )
    return data


def decode_image(
    data: bytes,
    *,
    source: str,
    limits: ImageLimits = ImageLimits(),
    max_side: int | None = None,
) -> Image.Image:
    """Decode image bytes into an upright RGB or RGBA image, or raise ``ImageError``.

    ``source`` (a path or URL) is only used in error messages, so that the user
    learns which of many images failed.

    ``max_side`` caps the longer side of the result (aspect ratio kept), so that a
    caller that needs a few hundred pixels does not hold a full camera frame. The
    pixel limit still applies to the size the file declares: a bomb is refused
    before any decoding, whatever size was asked for. An image already within
    ``max_side`` comes back exactly as it would without it.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be at least 1 (got {max_side})")
    if not data:
        raise ImageError(f"{source}: image data is empty")
    if len(data) > limits.max_bytes:
        raise ImageError(
            f"{source}: image data has {len(data)} bytes, over the limit of {limits.max_bytes}"
        )
    # Pillow signals an oversized canvas with a warning first; turning it into an
    # error keeps the decision here instead of in a log line nobody reads.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _open_checked(data, source, limits)
        try:
            declared = image.size
            if max_side is not None and max(declared) > max_side:
                return _decode_bounded(image, bounded_size(declared, max_side))
            _load_first_frame(image)
            upright = ImageOps.exif_transpose(image)
            if upright is None:
                upright = image
            return normalise_mode(upright)
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(source, exc) from None
        # Pillow's format plugins raise many exception types on hostile input
        # (OSError, SyntaxError, ValueError, struct.error, IndexError, ...); each of
        # them means this one image is unusable, never that the process should stop.
        except Exception as exc:
            raise ImageError(f"{source}: cannot decode image: {_reason(exc)}") from None
        finally:
            image.close()


def _decode_bounded(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Decode (reduced for JPEG), normalise, shrink to ``target``, then turn upright.

    Shrinking before the EXIF rotation means the rotation copies the small image, not
    the full frame, and each larger stage is closed as soon as the next exists, so a
    format without draft holds its full frame once and only while it is shrunk.
    ``target`` is in the stored (unrotated) axes, as the header declares them.
    """
    _load_first_frame(image, target)
    orientation = image.getexif().get(_ORIENTATION, 1)
    result = normalise_mode(image)
    if result is not image:
        image.close()
    smaller = _downscale(result, target)
    if smaller is not result:
        result.close()
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    if method is not None:
        turned = smaller.transpose(method)
        smaller.close()
        smaller = turned
    # The caller closes the opened file image; hand back an image of our own.
    return smaller.copy() if smaller is image else smaller


def decode_pixels(data: bytes, max_side: int | None = None) -> int:
    """Pixels a ``decode_image(data, max_side=...)`` holds at once, from the header alone.

    JPEG is decoded at the smallest DCT scale (1/1 to 1/8) that still covers the bound,
    so it holds at most about four times the bounded size; other formats hold their
    full frame. 0 when the header cannot be read (the decode proper says why).
    """
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            is_jpeg = probe.format == "JPEG"
    except Exception:  # see decode_image: any plugin error means "unusable image"
        return 0
    full = max(width, 0) * max(height, 0)
    if max_side is None or max(width, height) <= max_side or not is_jpeg:
        return full
    scale = 1
    while scale < 8 and max(width, height) // (scale * 2) >= max_side:
        scale *= 2
    return -(-width // scale) * -(-height // scale)


def _load_libc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (not Linux, or a libc without it, such as musl)."""
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
        return cast("Callable[[int], int]", trim)
    return None


_MALLOC_TRIM = _load_libc_trim()


def release_free_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim``); False where unavailable.

    A full frame of tens of MB is freed into the allocator's heaps (glibc raises its
    mmap threshold after the first large free, and each thread has its own arena), and
    glibc keeps those pages: without a trim the server's resident memory stays at its
    peak after a few concurrent large decodes. The trim takes about a millisecond.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


def load_image(
    path: Path, limits: ImageLimits = ImageLimits(), *, max_side: int | None = None
) -> Image.Image:
    """Read and decode an image file with the same limits and errors as ``decode_image``."""
    data = read_image_bytes(path, limits)
    return decode_image(data, source=str(path), limits=limits, max_side=max_side)


def bounded_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """The size that fits ``size`` into a ``max_side`` square, aspect ratio kept.

    The longer side becomes exactly ``max_side``; a size already within it is
    returned as it is, because enlarging would only add interpolated pixels.
    """
    width, height = size
    longer = max(width, height)
    if longer <= max_side:
        return size
    # Integer rounding, so the same size always maps to the same target.
    scaled_width = max(1, (width * max_side + longer // 2) // longer)
    scaled_height = max(1, (height * max_side + longer // 2) // longer)
    return scaled_width, scaled_height


def request_draft(image: Image.Image, target: tuple[int, int]) -> None:
    """Ask the decoder to decode at a reduced scale that still covers ``target``.

    Only the JPEG decoder honours this (libjpeg scales by 1/2, 1/4 or 1/8 while
    decoding, at a fraction of the time and memory); other formats ignore it and
    are decoded at full size. Pillow picks the strongest reduction whose result still
    covers ``target`` on both axes, so the final resize never has to enlarge.
    Must be called before the pixels are loaded.
    """
    image.draft(image.mode, target)


def _downscale(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """Resize to ``target`` with Lanczos; RGBA is resized with premultiplied alpha.

    ``reducing_gap`` lets Pillow box-reduce by a whole factor first when the image
    is still much larger than the target (formats without draft), which costs little
    quality and saves most of the time on a huge PNG.
    """
    if image.size == target:
        return image
    return image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_rgb(image: Image.Image) -> Image.Image:
    """Flatten onto white, for encoders that cannot use an alpha channel.

    White is what a catalog page shows behind a transparent product shot, so it is
    the background the picture was meant to be seen on.
    """
    if image.mode == "RGB":
        return image
    if image.mode != "RGBA":
        image = normalise_mode(image)
        if image.mode == "RGB":
            return image
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def normalise_mode(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGBA when it carries transparency, else to RGB."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode == "RGBA":
        return image
    if mode in _WIDE_GREY_MODES:
        return _wide_grey_to_8bit(image)
    if mode == "La":
        image = image.convert("LA")
    if mode in _ALPHA_MODES or image.has_transparency_data:
        return image.convert("RGBA")
    return image.convert("RGB")


def _open_checked(data: bytes, source: str, limits: ImageLimits) -> Image.Image:
    """Open lazily and check the declared size before any pixel is decoded."""
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _bomb_error(source, exc) from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{source}: cannot decode image: not a recognised image format") from None
    except Exception as exc:  # see decode_image: any plugin error means "unusable image"
        raise ImageError(f"{source}: cannot decode image: {_reason(exc)}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise ImageError(f"{source}: image has no pixels ({width}x{height})")
    if width * height > limits.max_pixels:
        image.close()
        raise ImageError(
            f"{source}: image has {width}x{height} pixels, "
            f"over the limit of {limits.max_pixels} pixels"
        )
    return image


def _load_first_frame(image: Image.Image, draft_target: tuple[int, int] | None = None) -> None:
    """Decode the first frame only; later frames of an animation are never needed."""
    # ``n_frames`` is not consulted: for GIF it would decode every frame to count them.
    if image.tell() != 0:
        image.seek(0)
    if draft_target is not None:
        request_draft(image, draft_target)
    image.load()


def _wide_grey_to_8bit(image: Image.Image) -> Image.Image:
    """Map 16-bit, 32-bit and float greyscale onto 0..255 by scaling, not clipping.

    Pillow's own conversion clips everything above 255 to white, which turns a
    normal 16-bit photo into a blank image.
    """
    values = np.asarray(image).astype(np.float64)
    scaled = _scale_to_byte_range(values, image.mode)
    grey = Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8), mode="L")
    key = image.info.get("transparency")
    if isinstance(key, int | float) and not isinstance(key, bool):
        alpha = np.where(values == key, 0, 255).astype(np.uint8)
        rgba = grey.convert("RGBA")
        rgba.putalpha(Image.fromarray(alpha, mode="L"))
        return rgba
    return grey.convert("RGB")


def _scale_to_byte_range(values: np.ndarray, mode: str) -> np.ndarray:
    """Pick the scale that the value range implies: 16-bit, 8-bit, unit float, or min-max."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros_like(values)
    low, high = float(finite.min()), float(finite.max())
    values = np.nan_to_num(values, nan=low, posinf=high, neginf=low)
    if mode.startswith("I;16"):
        return values / 257.0
    if mode == "F" and low >= 0.0 and high <= 1.0:
        return values * 255.0
    if low >= 0.0 and high <= 255.0:
        return values
    if low >= 0.0 and high <= 65535.0:
        return values / 257.0
    if high == low:
        return np.zeros_like(values)
    return (values - low) * (255.0 / (high - low))


def _bomb_error(source: str, exc: BaseException) -> ImageError:
    # Pillow's message already states the pixel count and its limit.
    return ImageError(f"{source}: image is too large to decode safely: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__
