"""The buffer plan: live ranges from the schedule, then offsets in one arena per dtype so that buffers whose
lifetimes do not overlap share memory. The peak is known before anything runs. Pure Python (no Numba), so
`netdsl summary` can report a training step's memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .schedule import Buf, Call, Item, Loop, Schedule

ALIGN = 16  # elements: 64 bytes for float32, so every buffer starts on a cache line
ITEMSIZE = {"i64": 8, "u8": 1}


def itemsize(dtype: str, fdtype: str) -> int:
    return ITEMSIZE.get(dtype, 8 if fdtype == "float64" else 4)


@dataclass
class Plan:
    batch: int
    fdtype: str
    ranges: dict[int, tuple[int, int]]  # buffer id -> (first, last) position
    arena_elements: dict[str, int] = field(default_factory=dict)  # dtype -> elements
    peak_bytes: int = 0
    total_bytes: int = 0  # the sum of all buffers, as if none were shared

    def describe(self, sched: Schedule) -> str:
        lines = [(f"buffer plan at batch {self.batch} ({self.fdtype}): peak {self.peak_bytes:,} bytes, "
                  f"{self.total_bytes:,} bytes if nothing were shared ({self.peak_bytes / max(1, self.total_bytes):.0%})")]
        lines.append(f"{'buffer':<34} {'kind':<6} {'shape':<22} {'bytes':>12} {'offset':>12}  live")
        for b in sorted(sched.bufs, key=lambda b: (b.dtype, b.offset)):
            first, last = self.ranges.get(b.id, (0, 0))
            size = b.elements(self.batch) * itemsize(b.dtype, self.fdtype)
            shape = "×".join(str(self.batch) if d == "B" else str(d) for d in b.template()) or "scalar"
            lines.append(f"{b.name[:34]:<34} {b.kind:<6} {shape:<22} {size:>12,} {b.offset:>12,}  {first}–{last}"
                         + (" (kept)" if b.pinned else ""))
        return "\n".join(lines)


def live_ranges(items: list[Item], bufs: list[Buf]) -> dict[int, tuple[int, int]]:
    """First and last position at which each buffer is used; a loop uses its buffers for its whole span."""
    ranges: dict[int, list[int]] = {}
    pos = [0]

    def visit(seq: list[Item]) -> None:
        for it in seq:
            if isinstance(it, Loop):
                start = pos[0]
                inner: list[Buf] = []
                _collect(it.body, inner)
                pos[0] += 1
                visit(it.body)
                end = pos[0]
                for b in inner:
                    r = ranges.setdefault(b.id, [start, end])
                    r[0], r[1] = min(r[0], start), max(r[1], end)
            else:
                for b in it.bufs():
                    r = ranges.setdefault(b.id, [pos[0], pos[0]])
                    r[0], r[1] = min(r[0], pos[0]), max(r[1], pos[0])
            pos[0] += 1

    visit(items)
    end = pos[0]
    out: dict[int, tuple[int, int]] = {}
    for b in bufs:
        first, last = ranges.get(b.id, [0, 0])
        if b.kind == "input":
            first = 0
        if b.pinned:
            last = end
        out[b.id] = (first, last)
    return out


def _collect(items: list[Item], out: list[Buf]) -> None:
    for it in items:
        if isinstance(it, Loop):
            _collect(it.body, out)
        elif isinstance(it, Call):
            out.extend(it.bufs())


def plan(sched: Schedule, batch: int, fdtype: str) -> Plan:
    """Assign offsets: largest buffers first, each at the lowest offset free during its live range."""
    ranges = live_ranges(sched.items, sched.bufs)
    result = Plan(batch, fdtype, ranges)
    by_dtype: dict[str, list[Buf]] = {}
    for b in sched.bufs:
        by_dtype.setdefault(b.dtype, []).append(b)
    for dtype, bufs in by_dtype.items():
        placed: list[tuple[int, int, int, int]] = []  # (first, last, offset, end)
        top = 0
        for b in sorted(bufs, key=lambda b: (-b.elements(batch), ranges[b.id][0], b.id)):
            size = _aligned(b.elements(batch))
            first, last = ranges[b.id]
            clashes = sorted((o, e) for f, la, o, e in placed if f <= last and first <= la)
            offset = 0
            for o, e in clashes:
                if offset + size <= o:
                    break
                offset = max(offset, e)
            b.offset = offset
            placed.append((first, last, offset, offset + size))
            top = max(top, offset + size)
        result.arena_elements[dtype] = top
        result.peak_bytes += top * itemsize(dtype, fdtype)
        result.total_bytes += sum(b.elements(batch) for b in bufs) * itemsize(dtype, fdtype)
    return result


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def overlaps(sched: Schedule, p: Plan) -> list[tuple[Buf, Buf]]:
    """Pairs of buffers that are live at the same time and share memory (must be empty)."""
    bad = []
    for i, a in enumerate(sched.bufs):
        a_lo, a_hi = a.offset, a.offset + a.elements(p.batch)
        fa, la = p.ranges[a.id]
        for b in sched.bufs[i + 1 :]:
            if b.dtype != a.dtype:
                continue
            b_lo, b_hi = b.offset, b.offset + b.elements(p.batch)
            if a_lo < b_hi and b_lo < a_hi:
                fb, lb = p.ranges[b.id]
                if fa <= lb and fb <= la:
                    bad.append((a, b))
    return bad


def planned_peak_bytes(net: Any, batch: int, fdtype: str = "float32") -> int:
    """Peak bytes of one training step: the arena, plus parameters, their gradients and optimizer state."""
    from .lower import lower

    sched = lower(net, train=True)
    p = plan(sched, batch, fdtype)
    size = 8 if fdtype == "float64" else 4
    params = sum(s.size for s in net.ir.params.values())
    trainable = sum(s.size for s in net.ir.params.values() if s.trainable and not s.state)
    return p.peak_bytes + size * (params + 2 * trainable)  # weights, gradients, one moment (SGD momentum)
