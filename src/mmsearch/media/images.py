"""Safe decoding of untrusted images.

Catalog images come from anywhere: a truncated upload, a file that is not an image,
or a tiny file whose header claims a gigapixel canvas must each fail as one
``ImageError`` for that image, never as a crash or an out-of-memory kill of the
whole indexing run. Every image that decodes comes back in one of two modes, RGB
or RGBA, upright according to its EXIF orientation, so encoders need not know about
the long tail of Pillow modes.
"""

from __future__ import annotations

import io
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mmsearch.errors import ImageError

# Modes that carry an alpha channel; anything else may still be transparent
# through a ``transparency`` entry in ``Image.info`` (palette or colour key).
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
# Integer and float greyscale modes whose values do not fit 0..255.
_WIDE_GREY_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})


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


def decode_image(data: bytes, *, source: str, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode image bytes into an upright RGB or RGBA image, or raise ``ImageError``.

    ``source`` (a path or URL) is only used in error messages, so that the user
    learns which of many images failed.
    """
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
            _load_first_frame(image)
            upright = ImageOps.exif_transpose(image)
            return normalise_mode(upright if upright is not None else image)
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


def load_image(path: Path, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Read and decode an image file with the same limits and errors as ``decode_image``."""
    data = read_image_bytes(path, limits)
    return decode_image(data, source=str(path), limits=limits)


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


def _load_first_frame(image: Image.Image) -> None:
    """Decode the first frame only; later frames of an animation are never needed."""
    # ``n_frames`` is not consulted: for GIF it would decode every frame to count them.
    if image.tell() != 0:
        image.seek(0)
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
