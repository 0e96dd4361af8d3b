"""Query images: decoded small, a bounded number of pixels at a time, memory handed back.

A search may carry an image of up to ``max_image_pixels`` (40 Mpx by default) in a
file of a few hundred KB: a 6300x6300 PNG that compresses to 154 KB held about 600 MB
while one search ran, and a few at once left the server gigabytes larger for good. So:

* the image is decoded to ``ingest_image_max_side``, the size ingest decodes catalog
  images to (the encoders never look closer, and query and catalog then match): JPEG
  at a reduced DCT scale, never at full size; other formats at full size, shrunk and
  freed at once (``media.images.decode_image``);
* the full-size frames being decoded at once, across the whole process, are bounded
  by a pixel budget (``DecodeBudget``): one image at the pixel limit decodes alone,
  smaller ones side by side; a request that cannot start within ``QUERY_DECODE_WAIT_S``,
  or finds ``QUERY_DECODE_MAX_WAITING`` already queued, gets a 429 with Retry-After
  instead of holding a worker thread;
* after a large decode, freed heap pages go back to the OS (``malloc_trim``), since
  glibc would otherwise keep the peak for the life of the process.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from PIL import Image

from mmsearch.media.images import ImageLimits, decode_image, decode_pixels, release_free_memory
from mmsearch.service.errors import TooManyRequests

# Pillow holds RGB and RGBA at 4 bytes a pixel: 48 Mpx of frames is about 190 MB,
# one image at the default 40 Mpx limit or a few camera-sized PNGs at a time.
QUERY_DECODE_PIXELS = 48_000_000
QUERY_DECODE_WAIT_S = 30.0
QUERY_DECODE_MAX_WAITING = 8
# A decode that held this many pixels or more is followed by a trim of the heap.
TRIM_FROM_PIXELS = 4_000_000


class QueryImagesBusy(TooManyRequests):
    """Too many large query images are being decoded right now; retry shortly."""


class DecodeBudget:
    """A process-wide budget of pixels being decoded at once (a weighted semaphore).

    A decode takes as many pixels as it will hold (``decode_pixels``); one larger than
    the whole budget still runs, alone. Waiting is bounded in time and in number, so
    a burst of huge images cannot tie up the service's worker threads.
    """

    def __init__(
        self,
        capacity: int = QUERY_DECODE_PIXELS,
        wait_s: float = QUERY_DECODE_WAIT_S,
        max_waiting: int = QUERY_DECODE_MAX_WAITING,
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 pixel (got {capacity})")
        self.capacity = capacity
        self.wait_s = wait_s
        self.max_waiting = max_waiting
        self._used = 0
        self._running = 0
        self._waiting = 0
        self._condition = threading.Condition()

    @property
    def in_use(self) -> int:
        """Pixels held by decodes running now."""
        with self._condition:
            return self._used

    @property
    def waiting(self) -> int:
        with self._condition:
            return self._waiting

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget for the block; ``QueryImagesBusy`` if they do
        not come free within ``wait_s`` or too many requests wait already."""
        pixels = min(max(int(pixels), 0), self.capacity)
        self._acquire(pixels)
        try:
            yield
        finally:
            with self._condition:
                self._used -= pixels
                self._running -= 1
                self._condition.notify_all()

    def _acquire(self, pixels: int) -> None:
        deadline = time.monotonic() + self.wait_s
        with self._condition:
            if self._fits(pixels):
                self._take(pixels)
                return
            if self._waiting >= self.max_waiting:
                raise self._busy()
            self._waiting += 1
            try:
                while not self._fits(pixels):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._busy()
                    self._condition.wait(remaining)
                self._take(pixels)
            finally:
                self._waiting -= 1

    def _fits(self, pixels: int) -> bool:
        return self._running == 0 or self._used + pixels <= self.capacity

    def _take(self, pixels: int) -> None:
        self._used += pixels
        self._running += 1

    def _busy(self) -> QueryImagesBusy:
        return QueryImagesBusy(
            "The server is decoding as many large query images as it can hold; "
            "retry shortly, or send a smaller image.",
            retry_after=min(self.wait_s, 5.0),
        )


# One per process: every worker thread's query-image decodes share it.
QUERY_DECODES = DecodeBudget()


def decode_bounded(
    data: bytes,
    source: str,
    limits: ImageLimits,
    max_side: int,
    budget: DecodeBudget | None = None,
) -> Image.Image:
    """Decode a query image to at most ``max_side`` under the process's decode budget.

    An image whose header is over the pixel limit (or unreadable) is refused by
    ``decode_image`` from its header alone, so it takes nothing from the budget and
    never waits behind other decodes just to be refused.
    """
    pixels = decode_pixels(data, max_side)
    if pixels == 0 or pixels > limits.max_pixels:
        return decode_image(data, source=source, limits=limits, max_side=max_side)
    with (budget or QUERY_DECODES).hold(pixels):
        try:
            return decode_image(data, source=source, limits=limits, max_side=max_side)
        finally:
            if pixels >= TRIM_FROM_PIXELS:
                release_free_memory()
