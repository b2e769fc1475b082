import numpy as np
import pytest
import torch

from segcore.errors import InputError
from segcore.prepared import PreparedData, PreparedDataset, create_arrays, write_manifest


def make_prepared(folder, normalization=None):
    folder.mkdir()
    arrs = create_arrays(folder, 4, 2, 8, 8, extras={"superpixels": np.int32})
    arrs["images"][:] = np.arange(4 * 2 * 64, dtype=np.float32).reshape(4, 2, 8, 8)
    arrs["labels"][:] = 1
    arrs["labels"][3] = 255
    arrs["superpixels"][:] = 2
    for a in arrs.values():
        a.flush()
    manifest = {
        "domain": "mri",
        "channels": ["a", "b"],
        "classes": ["bg", "fg"],
        "image_size": [8, 8],
        "samples": {
            "group": ["s1", "s1", "s2", "s3"],
            "index": [0, 1, 0, 0],
            "partition": [0, 1, 0, 0],
            "labeled": [True, True, True, False],
        },
        "groups": {"s1": {}, "s2": {}, "s3": {}},
        "splits": {"unlabeled": ["s3"], "labeled": ["s1"], "val": ["s2"], "test": []},
    }
    if normalization:
        manifest["normalization"] = normalization
    write_manifest(folder, manifest)
    return folder


def test_round_trip_and_memmap(tmp_path):
    data = PreparedData(make_prepared(tmp_path / "p"))
    assert isinstance(data.images, np.memmap)
    assert len(data) == 4 and data.num_classes == 2 and data.in_channels == 2
    assert list(data.sample_indices(data.split_groups("labeled"))) == [0, 1]
    ds = PreparedDataset(data, [1, 3], extras=["superpixels"])
    s = ds[0]
    assert s["image"].shape == (2, 8, 8) and s["label"].dtype == torch.int64
    assert torch.equal(s["image"], torch.arange(128, 256, dtype=torch.float32).reshape(2, 8, 8))
    assert s["meta"] == {"group": "s1", "index": 1, "partition": 1, "sample": 1}
    assert int(ds[1]["label"][0, 0]) == 255 and int(s["superpixels"][0, 0]) == 2


def test_normalization_applied_on_read(tmp_path):
    data = PreparedData(make_prepared(tmp_path / "p", {"mean": [10.0, 0.0], "std": [2.0, 1.0]}))
    x = data.image(0)
    assert x[0, 0, 0] == pytest.approx((0 - 10) / 2) and x[1, 0, 0] == pytest.approx(64.0)


def test_missing_manifest_and_extra_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no manifest.json"):
        PreparedData(tmp_path)
    data = PreparedData(make_prepared(tmp_path / "p"))
    with pytest.raises(InputError, match="no 'hillshade' array"):
        data.extra("hillshade")
    with pytest.raises(InputError, match="unknown split"):
        data.split_groups("train")
