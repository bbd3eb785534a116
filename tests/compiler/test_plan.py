"""The buffer plan: peak known before running, buffers reused, no two live buffers share memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from netdsl.compiler.lower import lower
from netdsl.compiler.plan import live_ranges, overlaps, plan

import netdsl

SPECS = Path(__file__).resolve().parents[2] / "specs"


def test_vgg16_training_step_peak_is_at_most_sixty_percent_of_all_buffers():
    net = netdsl.load(SPECS / "vgg16.net")
    sched = lower(net, train=True)
    p = plan(sched, 1, "float32")
    assert p.peak_bytes <= 0.6 * p.total_bytes, (p.peak_bytes, p.total_bytes)
    # the input image and every conv activation of the first stage must fit: a sanity floor
    assert p.peak_bytes > 2 * 64 * 224 * 224 * 4


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "googlenet", "resnet18", "resnet50", "vgg16"])
@pytest.mark.parametrize("train", [True, False])
def test_no_two_live_buffers_overlap(name, train):
    net = netdsl.load(SPECS / f"{name}.net")
    sched = lower(net, train=train)
    p = plan(sched, 2, "float32")
    assert overlaps(sched, p) == []
    # every buffer lies inside its arena
    for b in sched.bufs:
        assert 0 <= b.offset and b.offset + b.elements(2) <= p.arena_elements[b.dtype]


def test_overlap_detector_detects_a_forced_clash():
    net = netdsl.load(SPECS / "lenet5.net")
    sched = lower(net, train=True)
    p = plan(sched, 1, "float32")
    ranges = live_ranges(sched.items, sched.bufs)
    acts = [x for x in sched.bufs if x.kind == "act" and x.dtype == "f"]
    a, b = next((a, b) for a in acts for b in acts if a is not b and ranges[a.id][0] <= ranges[b.id][1]
                and ranges[b.id][0] <= ranges[a.id][1])
    b.offset = a.offset
    assert overlaps(sched, p)


def test_compile_reports_the_planned_peak(capsys):
    from netdsl.cli import main

    assert main(["compile", str(SPECS / "lenet5.net"), "--batch", "4", "--emit", "plan"]) == 0
    out = capsys.readouterr().out
    assert "buffer plan at batch 4" in out and "peak" in out
    net = netdsl.load(SPECS / "lenet5.net")
    summary = net.summary(batch=4).to_dict()
    assert summary["totals"]["train_memory_bytes"] > plan(lower(net, train=True), 4, "float32").peak_bytes
