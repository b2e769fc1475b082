"""``rs <stage>``: the remote-sensing stages, each runnable alone with the arguments the rules pass."""

from __future__ import annotations

import sys

from segcore.cli import REPORT_STAGE, Stage, run_cli

STAGES: list[Stage] = [
    (
        "demo-data",
        "generate the built-in synthetic scenes (4-band GeoTIFF, DEM in another CRS, landslide labels)",
        "rs.config:RSDemoDataConfig",
        "rs.synthetic:run_demo_data",
    ),
    (
        "preprocess",
        "scene + DEM (+ label) or Landslide4Sense -> aligned, terrain-augmented, tiled, memory-mapped data",
        "rs.config:RSPreprocessConfig",
        "rs.preprocess:run_preprocess",
    ),
    (
        "pretrain",
        "hyper-pixel contrastive pretraining with a momentum encoder and a queue (unlabeled tiles)",
        "rs.config:RSPretrainConfig",
        "segcore.stages.pretrain:run_pretrain",
        "rs.domain:RSDomain",
    ),
    (
        "finetune",
        "fine-tune an early- or dual-fusion U-Net on a percentage of labeled tiles",
        "rs.config:RSFinetuneConfig",
        "segcore.stages.finetune:run_finetune",
        "rs.domain:RSDomain",
    ),
    (
        "evaluate",
        "IoU per class, mIoU, landslide precision/recall/F1, overall accuracy on test tiles",
        "rs.config:RSEvaluateConfig",
        "segcore.stages.evaluate:run_evaluate",
        "rs.domain:RSDomain",
    ),
    (
        "predict",
        "whole-scene sliding-window prediction written as a GeoTIFF with the input's CRS and transform",
        "rs.config:RSPredictConfig",
        "segcore.stages.predict:run_predict",
        "rs.domain:RSDomain",
    ),
    REPORT_STAGE,  # the same stage as `segpretrain report`
]


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        "rs", "Remote-sensing stages of the contrastive pretraining / few-label segmentation pipeline.", STAGES, argv
    )


if __name__ == "__main__":
    sys.exit(main())
