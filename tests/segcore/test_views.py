import torch

from segcore.views import crop_resize, intensity_jitter


def test_crop_resize_of_full_box_is_identity_and_per_image():
    x = torch.rand(3, 1, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert torch.allclose(crop_resize(x, (1.0, 1.0), g), x, atol=1e-5)
    # a constant image stays constant whatever the box
    c = torch.full((2, 1, 16, 16), 0.7)
    assert torch.allclose(crop_resize(c, (0.3, 0.6), g), c, atol=1e-6)
    # per-image draws: the same image twice in a batch gets two different crops
    y = torch.rand(1, 1, 16, 16).repeat(2, 1, 1, 1)
    out = crop_resize(y, (0.4, 0.6), g)
    assert not torch.allclose(out[0], out[1])


def test_intensity_jitter_ranges_and_determinism():
    x = torch.rand(64, 1, 8, 8)
    a = intensity_jitter(x, torch.Generator().manual_seed(1))
    b = intensity_jitter(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1.5
    shift = a.mean(dim=(1, 2, 3)) - x.mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.3 + 1e-5 and shift.std() > 0.05  # drawn per image
    # no brightness/contrast change and no noise: identity (inside the clip range)
    same = intensity_jitter(x, torch.Generator().manual_seed(2), brightness=0.0, contrast=(1.0, 1.0))
    assert torch.allclose(same, x, atol=1e-6)
