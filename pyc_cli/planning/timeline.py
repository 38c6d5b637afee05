"""The memory timeline picture: every arena tensor as a box of (schedule steps) x (byte range)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..templating import template_env
from ..units import format_size
from .plan import MemoryPlan

_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
            "#ff9da7", "#9c755f", "#bab0ac")


@dataclass
class _Box:
    x: float
    y: float
    w: float
    h: float
    color: str
    label: str


@dataclass
class _Timeline:
    model: str
    mode: str
    arena_bytes: int
    arena_label: str
    bound_label: str
    no_reuse_label: str
    width: int = 960
    height: int = 480
    left: int = 30
    top: int = 26
    plot_width: int = 920
    plot_height: int = 420
    bound_y: float = 0.0
    boxes: list[_Box] = field(default_factory=list)


def timeline_svg(plan: MemoryPlan, model: str, steps: int) -> str:
    t = _Timeline(model, plan.mode, plan.arena_bytes, format_size(plan.arena_bytes),
                  format_size(plan.lower_bound_bytes), format_size(plan.no_reuse_bytes))
    x_scale = t.plot_width / max(steps, 1)
    y_scale = t.plot_height / max(plan.arena_bytes, 1)
    storage_colors: dict[str, str] = {}
    for tensor in plan.tensors:
        storage = tensor.alias_of or tensor.name
        color = storage_colors.setdefault(storage, _PALETTE[len(storage_colors) % len(_PALETTE)])
        t.boxes.append(_Box(
            round(t.left + tensor.start * x_scale, 2), round(t.top + tensor.offset * y_scale, 2),
            round(max((tensor.end - tensor.start + 1) * x_scale, 0.5), 2),
            round(max(tensor.bytes * y_scale, 0.5), 2), color,
            f"{tensor.name}: {tensor.bytes} B at offset {tensor.offset}, steps "
            f"{tensor.start}..{tensor.end} ({tensor.reason})"))
    t.bound_y = round(t.top + plan.lower_bound_bytes * y_scale, 2)
    return template_env().get_template("report/memory_timeline.svg.j2").render(t=t)
