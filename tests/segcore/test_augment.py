import torch

from segcore.augment import BatchSpatialAugment


def test_identity_settings_reproduce_the_batch():
    aug = BatchSpatialAugment(rotate_deg=0, scale=0, flip_axes=(), elastic_prob=0)
    x = torch.rand(3, 2, 16, 16)
    y = torch.randint(0, 4, (3, 16, 16))
    xo, yo = aug(x, y, torch.Generator().manual_seed(0))
    assert torch.allclose(xo, x, atol=1e-5) and torch.equal(yo, y)


def test_flips_and_rot90_are_exact_and_keep_image_label_aligned():
    aug = BatchSpatialAugment(rotate_deg=0, scale=0, flip_axes=(0, 1), elastic_prob=0, rot90=True)
    y = torch.randint(0, 3, (16, 12, 12))
    x = y[:, None].float() * 10  # the image encodes the label: alignment is checkable
    xo, yo = aug(x, y, torch.Generator().manual_seed(1))
    assert torch.allclose(xo[:, 0], yo.float() * 10, atol=1e-4)
    # each output is one of the 8 grid symmetries of its input (exact pixel permutation)
    for i in range(16):
        cands = [torch.rot90(t, k, (0, 1)) for t in (y[i], y[i].flip(0)) for k in range(4)]
        assert any(torch.equal(yo[i], c) for c in cands)
    assert not all(torch.equal(yo[i], y[i]) for i in range(16))


def test_rotation_marks_outside_pixels_ignored_and_labels_stay_in_class_set():
    aug = BatchSpatialAugment(rotate_deg=45, scale=0.2, elastic_prob=1.0, ignore_index=255)
    y = torch.randint(0, 4, (8, 32, 32))
    x = torch.rand(8, 1, 32, 32)
    _, yo = aug(x, y, torch.Generator().manual_seed(2))
    vals = set(yo.unique().tolist())
    assert vals <= {0, 1, 2, 3, 255} and 255 in vals
