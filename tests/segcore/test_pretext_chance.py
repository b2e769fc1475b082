"""The report's collapse rule with a chance level per step (``chance_history``): a queue-based
method's empty first step is no collapse, a real early collapse still is, and a malformed
history is one error naming the file (docs/report.md)."""

from __future__ import annotations

import math

import pytest

from segcore.errors import InputError
from segcore.report.pretext import collapse_step, pretext_status, read_pretrain_record
from tests.data.report import make


def test_an_empty_queue_at_step_0_is_no_collapse(tmp_path):
    # MoCo with a queue of 16 keys per step: chance log(1 + queued), loss 0 at the empty step 0
    chances = [math.log(1 + min(16 * i, 4096)) for i in range(8)]
    losses = [0.0, 2.5, 3.0, 3.2, 3.1, 3.0, 2.9, 2.8]
    path = make.pretrain_record(
        tmp_path / "mri" / "pretrain" / "mocov2", "mocov2", "image-level", losses, chances[-1], chance_history=chances
    )
    run = read_pretrain_record(path)
    assert run.chances == pytest.approx(tuple(chances))
    assert collapse_step(run.losses, run.chance) == 0  # one chance for every step: step 0 reads as a collapse
    assert collapse_step(run.losses, run.chance, chances=run.chances) is None
    assert pretext_status(run) == "below chance"


def test_a_collapse_is_still_flagged_against_the_step_chance(tmp_path):
    chances = [0.0, 2.8, 3.5, 3.9, 4.2, 4.2, 4.2, 4.2]
    path = make.pretrain_record(
        tmp_path / "p", "densecl", "dense", [0.0, 0.1, 0.05, 0.01, 0.01, 0.0, 0.0, 0.0], 4.2, chance_history=chances
    )
    run = read_pretrain_record(path)
    assert collapse_step(run.losses, run.chance, chances=run.chances) == 1  # 0.1 < 5 % of 2.8
    assert pretext_status(run).startswith("collapsed: the pretext task is trivially solved (loss 0.1 < 5% of chance")


@pytest.mark.parametrize("history", [[1.0], [1.0, "x"], "no"])
def test_a_malformed_chance_history_names_the_file(tmp_path, history):
    path = make.pretrain_record(tmp_path / "p", "byol", "image-level", [4.0, 3.0], 4.0, chance_history=history)
    with pytest.raises(InputError, match="chance_history") as err:
        read_pretrain_record(path)
    assert err.value.path == str(path)
