"""``medseg finetune`` budgets count subjects: budget 1 on ACDC-style data = both frames of one patient."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.cli import main as medseg
from medseg.preprocess import preprocess
from segcore.checkpoints import read_checkpoint
from segcore.prepared import PreparedData

FAST = ["--steps", "2", "--val-every", "2", "--channels", "4,8,16,16", "--batch-size", "4"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, acdc_make) -> Path:
    root = tmp_path_factory.mktemp("ft")
    acdc_make.make_acdc_nnunet(root / "raw", n_train=6, n_test=1, seed=2)
    return preprocess(root / "raw", root / "prep", image_size=(32, 32), n_test=1, n_val=1, n_labeled="all", seed=0)


def test_budget_one_labels_every_frame_of_one_subject_and_seeds_differ(prepared, tmp_path, capsys):
    data = PreparedData(prepared)
    pool = data.split_subjects("labeled")
    assert len(pool) == 4 and all(len(frames) == 2 for frames in pool.values())
    outs = [tmp_path / f"s{s}" for s in range(4)]
    assert (
        medseg(
            [
                "finetune",
                "--data",
                str(prepared),
                "--budget",
                "1",
                "--seed",
                "0",
                "1",
                "2",
                "3",
                "--out",
                *map(str, outs),
                *FAST,
            ]
        )
        == 0
    )
    runs = [read_checkpoint(out / "model.pt")["run"] for out in outs]
    for run in runs:
        (subject,) = run["labeled_subjects"]
        assert run["labeled"] == pool[subject]  # ED and ES of that patient
    assert sorted(r["labeled_subjects"][0] for r in runs) == sorted(pool)  # 4 seeds, 4 patients

    fixed = tmp_path / "fixed"
    target = sorted(pool)[2]
    assert (
        medseg(
            [
                "finetune",
                "--data",
                str(prepared),
                "--budget",
                "1",
                "--seed",
                "5",
                "--out",
                str(fixed),
                "--labeled-subjects",
                target[-3:],
                *FAST,
            ]
        )
        == 0
    )
    assert read_checkpoint(fixed / "model.pt")["run"]["labeled"] == pool[target]

    test_subject = data.split_subjects("test")
    capsys.readouterr()
    code = medseg(
        [
            "finetune",
            "--data",
            str(prepared),
            "--budget",
            "1",
            "--out",
            str(tmp_path / "bad"),
            "--labeled-subjects",
            *test_subject,
            *FAST,
        ]
    )
    assert code == 2 and not (tmp_path / "bad").exists()
    assert f"'{next(iter(test_subject))}' is in the test split" in capsys.readouterr().err
