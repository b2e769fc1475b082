"""Typed options of the MRI stages (the defaults and help texts ``medseg <stage> --help`` shows).

Light on purpose: the CLI parses and checks every option with these before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from segcore.budget import FixedCombinations
from segcore.config import ContrastivePretrainConfig, EvaluateConfig, FinetuneConfig, PredictConfig, option
from segcore.runtime.pool import parse_workers

# the demo's U-Net widths (the reference's are 16, 32, 64, 128, 128, 128)
DEFAULT_CHANNELS = "16,32,64,128,128"
CHANNELS_HELP = "U-Net encoder widths, comma-separated (ignored with --init: taken from the checkpoint)"


# the dataset layouts medseg.layouts reads (its LAYOUTS); --layout also takes auto (detect)
Layout = Literal["nnunet", "msd", "acdc", "plain"]


@dataclass
class MRIPreprocessConfig:
    """``medseg preprocess``: raw NIfTI volumes to prepared slices, splits and partitions."""

    input: Path = option(Path("data/mri_phantoms"), "raw dataset folder (or one NIfTI file)")
    out: Path = option(Path("data/mri_prepared"), "prepared data folder to write")
    layout: Literal["auto", Layout] = option("auto", "dataset layout (auto: detect)")
    target_spacing: tuple[float, float] = option(
        (1.5, 1.5), "in-plane spacing after resampling, mm", metavar=("H_MM", "W_MM"), gt=0
    )
    image_size: tuple[int, int] = option((64, 64), "slice size after centre crop/pad, pixels", metavar=("H", "W"), ge=8)
    partitions: int = option(4, "slice partitions per volume for the global contrastive loss", ge=1)
    n_test: int = option(10, "labeled subjects held out for the test set", ge=0)
    n_val: int = option(5, "labeled subjects for validation (model selection)", ge=0)
    n_labeled: str = option("10", "labeled pool size in subjects, or 'all' (the rest go to the unlabeled pool)")
    seed: int = option(0, "seed of the subject-level split", ge=0)
    percentiles: tuple[float, float] = option(
        (0.5, 99.5),
        "per-volume intensity clip percentiles, scaled to [0, 1]",
        metavar=("LOW", "HIGH"),
        ge=0,
        le=100,
    )
    slice_axis: Literal["auto", "0", "1", "2"] = option(
        "auto", "canonical (RAS) axis to slice along; auto = largest spacing"
    )
    channel: int = option(0, "input channel: nnU-Net _000C file or channel of a 4D Decathlon image", ge=0)
    subject_pattern: str | None = option(
        None,
        "subject key: regular expression searched in each case name, first group = subject (default: ACDC's "
        "patientNNN prefix, else the case name; ACDC layout: the patient folder)",
        metavar="REGEX",
    )
    subject_csv: Path | None = option(
        None, "subject key from a CSV file with the columns case,subject (one row per case)"
    )
    test_subjects: list[str] | None = option(
        None,
        "fixed test subjects (names as the subject keys, e.g. patient007, or their number, or a .txt file of "
        "names); replaces --n-test",
        metavar="SUBJECT",
    )
    val_subjects: list[str] | None = option(
        None, "fixed validation subjects, as --test-subjects; replaces --n-val", metavar="SUBJECT"
    )
    splits_from: Path | None = option(
        None,
        "take the test subjects from nnU-Net's splits_final.json (the validation subjects of --splits-fold) or a "
        "dataset.json 'test' list",
    )
    splits_fold: int = option(0, "fold of --splits-from's splits_final.json", ge=0)
    n4: bool = option(
        False,
        "N4 bias-field correction (SimpleITK) of each volume before the intensity normalisation",
        action="store_true",
    )
    workers: int = option(
        1,
        "processes that read, correct, resample and write volumes in parallel ('auto': one per usable core); the "
        "output is the same for any count",
        parse=parse_workers,
    )


@dataclass
class MRIDemoDataConfig:
    """``medseg demo-data``: the built-in cardiac phantoms as an nnU-Net raw dataset."""

    out: Path = option(Path("data/mri_phantoms"), "output folder (an nnU-Net raw dataset)")
    n_subjects: int = option(60, "number of phantom subjects (volumes)", ge=1)
    seed: int = option(0, "random seed; the same seed gives identical arrays", ge=0)
    n_slices: int = option(12, "short-axis slices per volume (base to apex)", ge=2)
    size: int = option(96, "in-plane size of each slice in voxels", ge=32)
    vary_storage: bool = option(
        True,
        "store some subjects permuted/flipped (--no-vary-storage: every subject in the generated voxel order)",
        action="bool",
    )


@dataclass
class MRIFinetuneConfig(FinetuneConfig):
    budget: str = option("all", "labeled subjects (all volumes of each): an integer or 'all' (the whole labeled pool)")
    labeled_subjects: Any = option(
        None,
        "fixed labeled subjects instead of the draw (names or numbers; repeat the option for several combinations, "
        "picked by the label seed; in a --config file also a mapping budget -> combinations); docs/mri_data.md",
        action=FixedCombinations,
        nargs="+",
        metavar="SUBJECT",
    )
    channels: str = option(DEFAULT_CHANNELS, CHANNELS_HELP)


@dataclass
class MRIPretrainConfig(ContrastivePretrainConfig):
    batch_size: int = option(
        0,
        "hpcl and the baselines: slices per batch (0: 16); the global and local stages take --volumes-per-batch",
    )
    channels: str = option(DEFAULT_CHANNELS, CHANNELS_HELP)
    stage: Literal["global", "local"] = option(
        "global", "global: encoder + g1; local: decoder blocks + g2 (needs --init)"
    )
    strategy: str | None = option(None, "global: GR, GD- or GD (default GD); local: LR or LD (default LR)")
    init: Path | None = option(None, "checkpoint to start from (the local stage needs the global stage's)")
    volumes_per_batch: int = option(4, "m: volumes per batch (batch = m × S partitions slices)", ge=1)
    temperature: float | None = option(
        None,
        "T of the InfoNCE similarities (default: the method's: 0.1 for the global and local stages, hpcl and "
        "detcon; 0.2 for mocov2 and densecl; byol has none)",
        gt=0,
    )
    crop_scale: tuple[float, float] = option(
        (0.5, 0.75),
        "global, hpcl and baseline views: crop side as a fraction of the image side (min max)",
        gt=0,
        le=1,
    )
    local_blocks: int | None = option(
        None, "l: decoder blocks trained by the local stage (default: those up to the H/4 map)", ge=1
    )
    local_negatives: Literal["neighbours", "all", "batch"] = option(
        "neighbours",
        "local negatives: the reference's 5 neighbouring regions (as the paper), all other regions of the image, "
        "or every other region of the batch (an extension: negatives from other images)",
    )
    noise_std: float = option(0.05, "local, hpcl and baseline views: max std of added Gaussian noise", ge=0)
    method: Literal["stages", "hpcl", "mocov2", "byol", "densecl", "detcon"] = option(
        "stages",
        "stages: the global/local stage chosen by --stage; hpcl: hyper-pixel contrastive pretraining of encoder "
        "+ decoder; mocov2, byol, densecl, detcon: the generic baselines (docs/ssl_baselines.md); all but stages "
        "ignore --stage",
    )
    n_segments: int | None = option(
        None, "hpcl, detcon --masks slic: SLIC superpixels per slice (default: one per 8x8 pixels)", ge=1
    )
    compactness: float = option(0.5, "hpcl, detcon --masks slic: SLIC compactness on the standardised slice", gt=0)
    masks: Literal["auto", "stored", "slic", "felzenszwalb"] = option(
        "auto",
        "detcon: the masks; auto: SLIC superpixels computed at the start of the run (--n-segments, --compactness); "
        "stored: the prepared data's superpixels.npy; felzenszwalb: Felzenszwalb-Huttenlocher segments (--fh-scale)",
    )


@dataclass
class MRIEvaluateConfig(EvaluateConfig):
    save_predictions: bool = option(True, "write native-space NIfTI predictions", action="bool")
    overlay_subjects: int = option(3, "subjects whose slices go into overlay.npz for the report", ge=0)


@dataclass
class MRIPredictConfig(PredictConfig):
    input: Path = option(None, "a NIfTI file or a folder of them (*.nii, *.nii.gz)", required=True)
    slice_axis: str | None = option(
        None,
        "canonical axis to slice along: auto (largest spacing), 0, 1 or 2 (default: as the model's training data)",
    )
    batch_size: int = option(32, "sliding windows per network call")
    overlap: float = option(
        0.25,
        "overlap of the sliding windows (the training image size) over a larger slice, as a fraction of the window "
        "side, in [0, 1)",
    )
