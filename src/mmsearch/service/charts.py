"""Inline SVG charts of the last hour of searches, rendered on the server.

No chart library and no CDN: the admin page shows query volume per minute as bars
and p50/p95 latency per minute as lines, from the in-process search history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from mmsearch.monitoring.metrics import SearchSample

WIDTH, HEIGHT, PAD_L, PAD_B, PAD_T = 640, 180, 48, 24, 12


@dataclass(frozen=True)
class MinuteBucket:
    minute: int  # minutes ago, 0 = the current minute
    count: int
    zero: int
    p50_ms: float | None
    p95_ms: float | None


def bucket_by_minute(
    samples: Sequence[SearchSample], now: float, minutes: int = 60
) -> list[MinuteBucket]:
    groups: list[list[SearchSample]] = [[] for _ in range(minutes)]
    for sample in samples:
        ago = int((now - sample.at) // 60)
        if 0 <= ago < minutes:
            groups[ago].append(sample)
    buckets = []
    for ago in range(minutes - 1, -1, -1):
        latencies = sorted(s.seconds * 1000.0 for s in groups[ago])
        buckets.append(
            MinuteBucket(
                ago,
                len(latencies),
                sum(1 for s in groups[ago] if s.hits == 0),
                _percentile(latencies, 0.50),
                _percentile(latencies, 0.95),
            )
        )
    return buckets


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    index = min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))
    return values[index]


def _frame(title: str, y_max: float, unit: str) -> list[str]:
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}"'
        ' xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{PAD_L}" y="10" class="chart-title">{escape(title)}</text>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = HEIGHT - PAD_B - fraction * (HEIGHT - PAD_B - PAD_T)
        parts.append(f'<line x1="{PAD_L}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        label = f"{y_max * fraction:.0f}{unit}" if y_max >= 10 else f"{y_max * fraction:.1f}{unit}"
        parts.append(
            f'<text x="{PAD_L - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{label}</text>'
        )
    parts.append(f'<text x="{PAD_L}" y="{HEIGHT - 6}" class="axis">-60 min</text>')
    parts.append(f'<text x="{WIDTH}" y="{HEIGHT - 6}" class="axis" text-anchor="end">now</text>')
    return parts


def volume_svg(buckets: Sequence[MinuteBucket]) -> str:
    y_max = max([b.count for b in buckets] + [1])
    parts = _frame("searches per minute", y_max, "")
    slot = (WIDTH - PAD_L) / max(len(buckets), 1)
    span = HEIGHT - PAD_B - PAD_T
    for i, bucket in enumerate(buckets):
        if not bucket.count:
            continue
        height = span * bucket.count / y_max
        x, y = PAD_L + i * slot + 1, HEIGHT - PAD_B - height
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(slot - 2, 1):.1f}" height="{height:.1f}"'
            f' class="bar"><title>{bucket.minute} min ago: {bucket.count} searches,'
            f" {bucket.zero} with no results</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def latency_svg(buckets: Sequence[MinuteBucket]) -> str:
    values = [v for b in buckets for v in (b.p50_ms, b.p95_ms) if v is not None]
    y_max = max([*values, 1.0]) * 1.1
    parts = _frame("latency per minute (p50, p95)", y_max, " ms")
    slot = (WIDTH - PAD_L) / max(len(buckets), 1)
    span = HEIGHT - PAD_B - PAD_T
    for name, pick in (("p50", lambda b: b.p50_ms), ("p95", lambda b: b.p95_ms)):
        points = [
            f"{PAD_L + (i + 0.5) * slot:.1f},{HEIGHT - PAD_B - span * value / y_max:.1f}"
            for i, b in enumerate(buckets)
            if (value := pick(b)) is not None
        ]
        if points:
            parts.append(f'<polyline points="{" ".join(points)}" class="line {name}"/>')
            for point in points:
                x, y = point.split(",")
                parts.append(f'<circle cx="{x}" cy="{y}" r="2.5" class="dot {name}"/>')
    parts.append(
        f'<text x="{WIDTH - 90}" y="10" class="legend p50">— p50</text>'
        f'<text x="{WIDTH - 45}" y="10" class="legend p95">— p95</text></svg>'
    )
    return "".join(parts)


def canary_svg(figures: dict[str, dict[str, float]], live: str, canary: str) -> str:
    """Live and canary side by side, one pair of bars per measure, each pair scaled to
    its own larger value (milliseconds and rates do not share an axis)."""
    measures = (("p95_ms", "p95 ms"), ("zero_rate", "zero-result rate"), ("ctr", "CTR"))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        ' aria-label="canary beside live" xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{PAD_L}" y="10" class="chart-title">canary beside live (this worker)</text>',
        f'<text x="{WIDTH - 140}" y="10" class="legend p50">■ live</text>'
        f'<text x="{WIDTH - 80}" y="10" class="legend p95">■ canary</text>',
    ]
    slot = (WIDTH - PAD_L) / len(measures)
    span = HEIGHT - PAD_B - PAD_T - 10
    for i, (key, label) in enumerate(measures):
        values = [figures.get(build, {}).get(key, 0.0) for build in (live, canary)]
        top = max([*values, 1e-9])
        for j, (value, css) in enumerate(zip(values, ("p50", "p95"), strict=True)):
            height = span * value / top
            x = PAD_L + i * slot + 10 + j * (slot / 2 - 10)
            y = HEIGHT - PAD_B - height
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot / 2 - 20:.1f}" height="{height:.1f}"'
                f' class="bar {css}"><title>{escape(label)}: {value:.4g}</title></rect>'
            )
        parts.append(
            f'<text x="{PAD_L + i * slot + slot / 2:.1f}" y="{HEIGHT - 6}" class="axis"'
            f' text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
