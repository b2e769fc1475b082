"""Fixtures of the MRI data path: the layout fixture generators and nibabel's real test files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nibabel.tests
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"


def _load_make(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_make", DATA / name / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def mri_make() -> ModuleType:
    """tests/data/mri_layouts/make.py: make_nnunet, make_msd, make_acdc, make_plain, tiny_case..."""
    return _load_make("mri_layouts")


@pytest.fixture(scope="session")
def acdc_make() -> ModuleType:
    """tests/data/acdc/make.py: make_acdc (the real ACDC layout), make_acdc_nnunet (nnU-Net's conversion)."""
    return _load_make("acdc")


@pytest.fixture(scope="session")
def nibabel_data() -> Path:
    """nibabel's shipped real NIfTI files (anatomical.nii, example4d.nii.gz, ...)."""
    return Path(nibabel.tests.__file__).parent / "data"


def leftovers(out: Path) -> list[Path]:
    """The output folder itself and any temporary siblings an atomic write could leave."""
    found = [out] if out.exists() else []
    return found + sorted(out.parent.glob(f".{out.name}.tmp-*")) + sorted(out.parent.glob(f".{out.name}.old-*"))
