"""``medseg <stage>``: the MRI stages, each runnable alone with the arguments the rules pass."""

from __future__ import annotations

import sys

from segcore.cli import REPORT_STAGE, Stage, run_cli

STAGES: list[Stage] = [
    (
        "demo-data",
        "generate the built-in cardiac MRI phantom dataset (nnU-Net raw layout)",
        "medseg.config:MRIDemoDataConfig",
        "medseg.phantoms:run_demo_data",
    ),
    (
        "preprocess",
        "NIfTI dataset (nnU-Net raw, MSD, ACDC, plain folder) -> prepared slices + manifest",
        "medseg.config:MRIPreprocessConfig",
        "medseg.preprocess:run_preprocess",
    ),
    (
        "pretrain",
        "contrastive pretraining (global G^R/G^D-/G^D encoder stage, local L^R/L^D decoder stage, hyper-pixel)",
        "medseg.config:MRIPretrainConfig",
        "segcore.stages.pretrain:run_pretrain",
        "medseg.domain:MRIDomain",
    ),
    (
        "finetune",
        "fine-tune a 2D U-Net on N labeled volumes (from scratch or a checkpoint)",
        "medseg.config:MRIFinetuneConfig",
        "segcore.stages.finetune:run_finetune",
        "medseg.domain:MRIDomain",
    ),
    (
        "evaluate",
        "score held-out subjects in native space (Dice, HD95) and write predictions",
        "medseg.config:MRIEvaluateConfig",
        "segcore.stages.evaluate:run_evaluate",
        "medseg.domain:MRIDomain",
    ),
    (
        "predict",
        "segment NIfTI volumes with a fine-tuned model; NIfTI out with the input's affine",
        "medseg.config:MRIPredictConfig",
        "segcore.stages.predict:run_predict",
        "medseg.domain:MRIDomain",
    ),
    REPORT_STAGE,  # the same stage as `segpretrain report`
]


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        "medseg", "MRI stages of the contrastive pretraining / few-label segmentation pipeline.", STAGES, argv
    )


if __name__ == "__main__":
    sys.exit(main())
