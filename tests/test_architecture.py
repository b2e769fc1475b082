"""Imports point one way: medseg and rs import segcore; segcore imports neither (nor nibabel/rasterio)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_segcore_is_domain_agnostic():
    for path in (ROOT / "segcore").rglob("*.py"):
        bad = _imports(path) & {"medseg", "rs", "nibabel", "rasterio", "h5py"}
        assert not bad, f"{path} imports {bad}"


def test_medseg_and_rs_do_not_import_each_other():
    for pkg, other in (("medseg", "rs"), ("rs", "medseg")):
        for path in (ROOT / pkg).rglob("*.py"):
            assert other not in _imports(path), f"{path} imports {other}"
