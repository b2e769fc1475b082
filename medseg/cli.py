"""``medseg <stage>``: the MRI stages, each runnable alone with the arguments the rules pass."""

from __future__ import annotations

import sys

from segcore.cli import REPORT_STAGE, Stage, run_cli

STAGES: list[Stage] = [
    ("demo-data", "generate the built-in cardiac MRI phantom dataset (nnU-Net raw layout)", "medseg.phantoms:add_demo_data_options", "medseg.phantoms:run_demo_data"),
    ("preprocess", "NIfTI dataset (nnU-Net raw, MSD, ACDC, plain folder) -> prepared slices + manifest", "medseg.preprocess:add_preprocess_options", "medseg.preprocess:run_preprocess"),
    ("pretrain", "contrastive pretraining (global G^R/G^D-/G^D encoder stage, local L^R/L^D decoder stage)", "medseg.pretrain:add_pretrain_options", "medseg.pretrain:run_pretrain"),
    ("finetune", "fine-tune a 2D U-Net on N labeled volumes (from scratch or a checkpoint)", "medseg.finetune:add_finetune_options", "medseg.finetune:run_finetune"),
    ("evaluate", "score held-out subjects in native space (Dice, HD95) and write predictions", "medseg.evaluate:add_evaluate_options", "medseg.evaluate:run_evaluate"),
    ("predict", "segment NIfTI volumes with a fine-tuned model; NIfTI out with the input's affine", "medseg.predict:add_predict_options", "medseg.predict:run_predict"),
    REPORT_STAGE,  # the same stage as `segpretrain report`
]


def main(argv: list[str] | None = None) -> int:
    return run_cli("medseg", "MRI stages of the contrastive pretraining / few-label segmentation pipeline.", STAGES, argv)


if __name__ == "__main__":
    sys.exit(main())
