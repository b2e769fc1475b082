"""Fixtures of the MRI data path: the layout fixture generators and nibabel's real test files."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nibabel.tests
import pytest

MAKE_PATH = Path(__file__).resolve().parents[1] / "data" / "mri_layouts" / "make.py"


def _load_make() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mri_layouts_make", MAKE_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def mri_make() -> ModuleType:
    """tests/data/mri_layouts/make.py: make_nnunet, make_msd, make_acdc, make_plain, tiny_case..."""
    return _load_make()


@pytest.fixture(scope="session")
def nibabel_data() -> Path:
    """nibabel's shipped real NIfTI files (anatomical.nii, example4d.nii.gz, ...)."""
    return Path(nibabel.tests.__file__).parent / "data"


def leftovers(out: Path) -> list[Path]:
    """The output folder itself and any temporary siblings an atomic write could leave."""
    found = [out] if out.exists() else []
    return found + sorted(out.parent.glob(f".{out.name}.tmp-*")) + sorted(out.parent.glob(f".{out.name}.old-*"))
