"""The dashboard's chart as plain geometry for an inline SVG (no script: the console's
CSP allows none): sign-ins per day as bars, failed sign-ins and sign-ups as lines over
them, a y axis rounded up to 1, 2 or 5 × 10ⁿ. The template draws it; the colours come
from console.css, so the chart follows the light and dark themes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 28, 12, 36
BAR_SHARE = 0.6  # of a day's slot


@dataclass(frozen=True)
class Day:
    """One day's figures, as the chart and its table show them."""

    day: date
    signins: int
    failed: int
    signups: int

    @property
    def label(self) -> str:
        return self.day.strftime("%d %b")


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str
    today: bool


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_left: int
    plot_right: int
    baseline: float
    bars: list[Bar]
    failed_points: str
    signup_points: str
    ticks: list[Tick]
    x_labels: list[XLabel]


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 × 10ⁿ at or above `value` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def daily_chart(days: Sequence[Day], today: date) -> Chart:
    """The geometry of `days` (oldest first) in a WIDTH × HEIGHT box."""
    top = nice_ceiling(max((max(d.signins, d.failed, d.signups) for d in days), default=0))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = float(TOP + plot_height)
    slot = plot_width / max(len(days), 1)

    def y_of(value: int) -> float:
        return round(baseline - value / top * plot_height, 1)

    def centre(index: int) -> float:
        return round(LEFT + slot * index + slot / 2, 1)

    bars = []
    for index, day in enumerate(days):
        y = y_of(day.signins)
        bars.append(
            Bar(
                x=round(centre(index) - slot * BAR_SHARE / 2, 1),
                y=y,
                width=round(slot * BAR_SHARE, 1),
                height=round(baseline - y, 1),
                title=f"{day.label}: sign-ins {day.signins}, failed sign-ins {day.failed}, "
                f"sign-ups {day.signups}",
                today=day.day == today,
            )
        )
    failed = " ".join(f"{centre(i)},{y_of(d.failed)}" for i, d in enumerate(days))
    signups = " ".join(f"{centre(i)},{y_of(d.signups)}" for i, d in enumerate(days))
    ticks = [Tick(y=y_of(value), label=f"{value:,}") for value in (0, top // 2, top)]
    if top == 1:
        ticks = [Tick(y=y_of(0), label="0"), Tick(y=y_of(1), label="1")]
    # A date under every seventh day, counted back from the last (today's).
    x_labels = [
        XLabel(x=centre(i), label=d.label)
        for i, d in enumerate(days)
        if (len(days) - 1 - i) % 7 == 0
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        plot_left=LEFT,
        plot_right=WIDTH - RIGHT,
        baseline=baseline,
        bars=bars,
        failed_points=failed,
        signup_points=signups,
        ticks=ticks,
        x_labels=x_labels,
    )
