"""Semi-supervised fine-tuning (segcore.semi): pseudo-labels and thresholds on hand-made inputs,
strong views that keep image and pseudo-label aligned, the local contrastive term against a
brute-force computation, the teacher outside the gradient, BatchNorm statistics untouched by
every unlabeled forward, and a loss that goes down."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from segcore.augment import BatchSpatialAugment
from segcore.config import SEMI_MODES, SemiConfig
from segcore.losses.label_contrastive import label_contrastive_loss, sample_pixels_per_class
from segcore.momentum import ema_decay
from segcore.networks.unet import UNet2D
from segcore.semi import MODES, SemiMode
from segcore.semi.augment import StrongAugment, apply_cutmix, cutmix_boxes, gaussian_blur, weak_view
from segcore.semi.base import ramp
from segcore.semi.batchnorm import unlabeled_batchnorm
from segcore.semi.contrast import PixelProjectionHead, pixel_contrast
from segcore.semi.pool import label_prior
from segcore.semi.pseudo import (
    ClassThresholds,
    DistributionAlignment,
    pseudo_labels,
    teacher_probabilities,
    unlabeled_loss,
)
from segcore.semi.unimatch import channel_dropout
from segcore.tasks.segmentation import SegmentationTask
from segcore.tasks.semi_segmentation import SemiSegmentationTask, semi_generator

pytestmark = pytest.mark.filterwarnings("ignore:.*self.log.*")
SIZE = 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny convolutions on one thread: on a shared machine more threads only wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- pseudo-labels


def test_threshold_masks_low_confidence_pixels_exactly():
    # one image of 2 x 3 pixels, 3 classes: top probabilities 0.96, 0.50, 0.95 (== tau), 0.80, 0.94, 0.99
    probs = torch.tensor(
        [
            [[0.96, 0.02, 0.02], [0.50, 0.40, 0.10], [0.03, 0.95, 0.02]],
            [[0.10, 0.10, 0.80], [0.03, 0.94, 0.03], [0.005, 0.005, 0.99]],
        ]
    ).permute(2, 0, 1)[None]  # (1, 3, 2, 3)
    labels, confident = pseudo_labels(probs, 0.95)
    assert labels.tolist() == [[[0, 0, 1], [2, 1, 2]]]
    assert confident.tolist() == [[[True, False, True], [False, False, True]]]
    valid = torch.tensor([[[True, True, False], [True, True, True]]])
    assert pseudo_labels(probs, 0.95, valid)[1].tolist() == [[[True, False, False], [False, False, True]]]
    # per-class thresholds: class 2 at 0.8 takes the 0.80 pixel, class 1 at 0.96 drops the 0.95 one
    per_class = torch.tensor([0.95, 0.96, 0.8])
    assert pseudo_labels(probs, per_class)[1].tolist() == [[[True, False, False], [True, False, True]]]


def test_adaptive_thresholds_follow_the_moving_class_probabilities():
    ct = ClassThresholds(2, tau=0.9, momentum=0.5)
    assert torch.allclose(ct.thresholds(), torch.tensor([0.9, 0.9]))  # p starts at 1/K
    probs = torch.zeros(1, 2, 1, 4)
    probs[0, 0] = torch.tensor([0.9, 0.9, 0.9, 0.5])
    probs[0, 1] = 1 - probs[0, 0]
    valid = torch.tensor([[[True, True, True, False]]])  # the 0.5 pixel is outside the image: not counted
    thr = ct.update(probs, valid)
    # p = 0.5 * [0.5, 0.5] + 0.5 * [0.9, 0.1] = [0.7, 0.3]; thresholds 0.9 * p / 0.7
    assert torch.allclose(ct.class_prob, torch.tensor([0.7, 0.3]))
    assert torch.allclose(thr, torch.tensor([0.9, 0.9 * 0.3 / 0.7]))
    assert "class_prob" in ct.state_dict()  # resumed with the run


def test_distribution_alignment_is_exact_on_a_hand_made_example():
    da = DistributionAlignment(torch.tensor([1.0, 1.0]), momentum=0.5)  # prior normalised to [0.5, 0.5]
    assert torch.allclose(da.teacher_mean, torch.tensor([0.5, 0.5]))  # starts at the prior
    probs = torch.zeros(1, 2, 1, 4)
    probs[0, 0] = torch.tensor([0.9, 0.9, 0.6, 0.3])
    probs[0, 1] = 1 - probs[0, 0]
    valid = torch.tensor([[[True, True, False, False]]])  # the mean is over the first two pixels: [0.9, 0.1]
    aligned = da(probs, valid)
    # mean = 0.5 * [0.5, 0.5] + 0.5 * [0.9, 0.1] = [0.7, 0.3]; p' ∝ p * [0.5 / 0.7, 0.5 / 0.3]
    assert torch.allclose(da.teacher_mean, torch.tensor([0.7, 0.3]))
    ratio = torch.tensor([0.5 / 0.7, 0.5 / 0.3])
    expected = probs[0, :, 0].T * ratio
    expected = expected / expected.sum(dim=1, keepdim=True)
    assert torch.allclose(aligned[0, :, 0].T, expected)
    assert torch.allclose(aligned.sum(dim=1), torch.ones(1, 1, 4))
    assert aligned[0, :, 0, 2].argmax() == 1  # 0.6 / 0.4 for background becomes ~0.39 / 0.61: the rare class
    assert {"prior", "teacher_mean"} <= set(da.state_dict())  # resumed with the run
    with pytest.raises(ValueError, match="positive"):
        DistributionAlignment(torch.tensor([1.0, 0.0]))


def test_distribution_alignment_brings_a_biased_teacher_to_the_labeled_frequencies():
    # a teacher that gives the rare class (10 % of the labeled pixels) 2 % on average
    da = DistributionAlignment(torch.tensor([0.9, 0.1]), momentum=0.9)
    g = torch.Generator().manual_seed(0)
    valid = torch.ones(4, 8, 8, dtype=torch.bool)
    for _ in range(200):
        fg = torch.rand(4, 1, 8, 8, generator=g) * 0.04  # mean 0.02
        aligned = da(torch.cat([1 - fg, fg], dim=1), valid)
    assert abs(float(da.teacher_mean[1]) - 0.02) < 0.003
    assert abs(float(aligned[:, 1].mean()) - 0.1) < 0.02  # the raw mean was 0.02


class _Prepared:
    """The four things label_prior reads of a PreparedData: 3 groups of one 2 x 3 label map each."""

    num_classes, ignore_index = 3, 255
    labels = torch.tensor([[[0, 0, 1], [1, 255, 0]], [[2, 2, 2], [2, 2, 2]], [[0, 1, 2], [255, 255, 0]]]).numpy()
    group = ["a", "b", "c"]

    def sample_indices(self, groups):
        return [i for i, g in enumerate(self.group) if g in set(groups)]


def test_label_prior_counts_the_labeled_set_only_with_one_pseudo_count():
    # group a: classes 0 0 1 1 0 (one ignored) -> counts [3, 2, 0] + 1 = [4, 3, 1] / 8
    assert label_prior(_Prepared(), ["a"]) == pytest.approx([4 / 8, 3 / 8, 1 / 8])
    # groups a + c: [3 + 2, 2 + 1, 0 + 1] + 1 = [6, 4, 2] / 12; group b (all class 2) is not read
    assert label_prior(_Prepared(), ["a", "c"]) == pytest.approx([6 / 12, 4 / 12, 2 / 12])


def test_alignment_needs_the_labeled_prior():
    net = UNet2D(1, 2, channels=(4, 8, 8))
    with pytest.raises(ValueError, match="label_prior"):
        _mode("fixmatch", net, align="distribution")
    mode = _mode("fixmatch", net, align="distribution", label_prior=[0.8, 0.2])
    assert torch.allclose(mode.alignment.prior, torch.tensor([0.8, 0.2]))
    assert _mode("fixmatch", net).alignment is None


def test_unlabeled_losses_on_confident_pixels_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    confident = torch.rand(2, 4, 4, generator=g) > 0.5
    valid = confident | (torch.rand(2, 4, 4, generator=g) > 0.3)
    ce = F.cross_entropy(logits, labels, reduction="none")
    assert math.isclose(
        float(unlabeled_loss("ce", logits, labels, confident, valid)),
        float(ce[confident].sum() / valid.sum()),
        rel_tol=1e-6,
    )
    # dice-ce by hand: CE mean over confident pixels + 1 - mean Dice of the foreground classes present
    p = logits.softmax(1)
    dices = []
    for c in (1, 2):
        t = (labels == c) & confident
        if t.any():
            pc = p[:, c][confident]
            tc = t[confident].float()
            dices.append((2 * (pc * tc).sum() + 1e-5) / (pc.sum() + tc.sum() + 1e-5))
    expected = float(ce[confident].mean()) + 1 - float(sum(dices) / len(dices))
    assert math.isclose(float(unlabeled_loss("dice-ce", logits, labels, confident, valid)), expected, rel_tol=1e-5)
    # another label on an unconfident pixel changes neither
    other = labels.clone()
    other[~confident] = (other[~confident] + 1) % 3
    for kind in ("ce", "dice-ce"):
        a = unlabeled_loss(kind, logits, labels, confident, valid)
        assert torch.equal(a, unlabeled_loss(kind, logits, other, confident, valid))
    # a foreground class without a confident pixel is no Dice term (it is absent because unsure)
    only_bg = confident & (labels == 0)
    assert math.isclose(
        float(unlabeled_loss("dice-ce", logits, labels, only_bg, valid)), float(ce[only_bg].mean()), rel_tol=1e-6
    )
    none = torch.zeros_like(confident)
    assert float(unlabeled_loss("ce", logits, labels, none, valid)) == 0.0
    assert float(unlabeled_loss("dice-ce", logits, labels, none, valid)) == 0.0


def test_class_balanced_unlabeled_losses_weigh_each_pseudo_class_equally():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 5, 5, generator=g)
    labels = torch.zeros(2, 5, 5, dtype=torch.long)
    labels[0, :2, :2] = 1  # a rare class: 4 pixels against 46 background (class 2 never predicted)
    confident = torch.rand(2, 5, 5, generator=g) > 0.2
    confident[0, :2, :2] = True
    valid = torch.ones(2, 5, 5, dtype=torch.bool)
    valid[1, -1] = False
    confident &= valid
    ce = F.cross_entropy(logits, labels, reduction="none")
    per_class = [ce[confident & (labels == c)].mean() for c in (0, 1)]  # class 2 absent: no term
    balanced_ce = float(sum(per_class) / 2)
    share = float(confident.sum() / valid.sum())
    got = float(unlabeled_loss("ce", logits, labels, confident, valid, balance=True))
    assert math.isclose(got, share * balanced_ce, rel_tol=1e-6)
    assert not math.isclose(got, float(unlabeled_loss("ce", logits, labels, confident, valid)), rel_tol=1e-3)
    dice_part = float(unlabeled_loss("dice-ce", logits, labels, confident, valid)) - float(ce[confident].mean())
    assert math.isclose(
        float(unlabeled_loss("dice-ce", logits, labels, confident, valid, balance=True)),
        balanced_ce + dice_part,
        rel_tol=1e-5,
    )
    # with as many confident pixels of each class, balancing changes nothing
    even = torch.zeros(1, 2, 4, dtype=torch.long)
    even[0, 1] = 1
    lg, ok = torch.randn(1, 2, 2, 4, generator=g), torch.ones(1, 2, 4, dtype=torch.bool)
    assert math.isclose(
        float(unlabeled_loss("ce", lg, even, ok, ok, balance=True)),
        float(unlabeled_loss("ce", lg, even, ok, ok)),
        rel_tol=1e-6,
    )
    # no confident pixel: 0, and the gradient flows (zero)
    lg.requires_grad_(True)
    zero = unlabeled_loss("ce", lg, even, torch.zeros_like(ok), ok, balance=True)
    zero.backward()
    assert float(zero.detach()) == 0.0 and lg.grad is not None and float(lg.grad.abs().sum()) == 0.0
    # the option reaches the mode's loss
    mode = _mode("fixmatch", UNet2D(1, 2, channels=(4, 8, 8)), balance="class")
    assert math.isclose(float(mode.loss_on(logits, labels, confident, valid)), got, rel_tol=1e-6)


def test_teacher_prediction_is_eval_mode_without_gradients():
    torch.manual_seed(0)
    net = UNet2D(1, 3, channels=(4, 8)).train()
    x = torch.randn(4, 1, SIZE, SIZE)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probs = teacher_probabilities(net, x)
    assert net.training and probs.grad_fn is None and not probs.requires_grad
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # BatchNorm untouched
    with torch.no_grad():
        expected = copy.deepcopy(net).eval()(x).softmax(1)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(4, SIZE, SIZE), atol=1e-5)


# --------------------------------------------------------------------------- views


def _label_images(b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose channel 0 is the pixel's label and channel 1 the sample's index."""
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 4, (b, SIZE, SIZE), generator=g)
    index = torch.arange(b, dtype=torch.float32)[:, None, None].expand(b, SIZE, SIZE)
    return torch.stack([labels.float(), index], dim=1), labels


def test_cutmix_mixes_image_and_pseudo_label_alike():
    x, labels = _label_images()
    confident = labels > 1
    strong = StrongAugment(jitter_channels=[], blur_prob=0.0, cutmix_prob=1.0, cutmix_area=(0.1, 0.4))
    x_s, (y_s, c_s) = strong(x, [labels, confident], torch.Generator().manual_seed(1))
    assert torch.equal(x_s[:, 0], y_s.float())  # every pixel keeps the label of the content it shows
    assert torch.equal(c_s, y_s > 1)  # and its confidence
    partner_shown = x_s[:, 1] != x[:, 1]
    for i in range(len(x)):
        area = int(partner_shown[i].sum())
        assert 0.05 * SIZE**2 <= area <= 0.45 * SIZE**2  # every sample got a box of the asked size
        rows, cols = partner_shown[i].nonzero(as_tuple=True)
        assert area == (int(rows.max() - rows.min()) + 1) * (int(cols.max() - cols.min()) + 1)  # a box
        assert len(set(x_s[i, 1][partner_shown[i]].tolist())) == 1  # of one partner
    assert not torch.equal(y_s, labels)


def test_intensity_jitter_changes_the_image_but_keeps_it_aligned():
    x, labels = _label_images()
    strong = StrongAugment(jitter_channels=[1], jitter_prob=1.0, blur_prob=0.0, cutmix_prob=1.0)
    x_s, (y_s,) = strong(x, [labels], torch.Generator().manual_seed(2))
    assert torch.equal(x_s[:, 0], y_s.float())  # channel 0 not jittered: still the mixed label
    plain = StrongAugment(jitter_channels=[1], jitter_prob=0.0, blur_prob=0.0, cutmix_prob=1.0)
    x_p, (y_p,) = plain(x, [labels], torch.Generator().manual_seed(2))
    assert torch.equal(y_p, y_s)  # the same boxes: the jitter draws do not depend on its strength
    # a sample's own index channel is constant, so its std is 0: gain and shift leave it as it is
    g = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 3, SIZE, SIZE, generator=g)
    out = StrongAugment(jitter_channels=[0, 2], jitter_prob=1.0, blur_prob=0.0, cutmix_prob=0.0).photometric(
        noisy, torch.Generator().manual_seed(5)
    )
    assert torch.equal(out[:, 1], noisy[:, 1]) and not torch.allclose(out[:, [0, 2]], noisy[:, [0, 2]])
    # per sample and channel an affine map of the intensities about their mean
    for i in range(2):
        for c in (0, 2):
            a, b = noisy[i, c].flatten(), out[i, c].flatten()
            gain = float(((a - a.mean()) * (b - b.mean())).sum() / ((a - a.mean()) ** 2).sum())
            assert 0.7 - 1e-5 <= gain <= 1.3 + 1e-5
            assert torch.allclose(b, (a - a.mean()) * gain + b.mean(), atol=1e-5)
            assert abs(float(b.mean() - a.mean())) <= 0.3 * float(a.std()) + 1e-5


def test_blur_keeps_constants_and_identity_at_sigma_zero():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, SIZE, SIZE, generator=g)
    out = gaussian_blur(x, torch.tensor([0.0, 1.0, 2.0]), radius=4)
    assert torch.equal(out[0], x[0])
    assert out[2].std() < out[1].std() < x[1].std()
    const = torch.full((1, 1, SIZE, SIZE), 3.0)
    assert torch.allclose(gaussian_blur(const, torch.tensor([1.5]), radius=4), const)


def test_cutmix_boxes_never_pair_a_sample_with_itself():
    for seed in range(20):
        box, partner = cutmix_boxes(5, SIZE, SIZE, 1.0, (0.02, 0.4), torch.Generator().manual_seed(seed))
        assert (partner != torch.arange(5)).all() and sorted(partner.tolist()) == list(range(5))
        assert box.flatten(1).any(1).all()
    box, partner = cutmix_boxes(1, SIZE, SIZE, 1.0, (0.02, 0.4), torch.Generator())
    assert not box.any() and partner.tolist() == [0]  # one sample: nothing to mix
    x = torch.arange(2.0)[:, None, None, None].expand(2, 1, 4, 4)
    mixed, (t,) = apply_cutmix(x, [torch.zeros(2, 4, 4)], torch.zeros(2, 4, 4, dtype=torch.bool), torch.tensor([1, 0]))
    assert torch.equal(mixed, x) and not t.any()


def test_weak_view_marks_pixels_from_outside_the_image():
    x = torch.ones(4, 1, SIZE, SIZE)
    same, valid = weak_view(x, None, torch.Generator())
    assert same is x and valid.all()
    augment = BatchSpatialAugment(rotate_deg=30, scale=0.3, elastic_prob=0.0)
    x_w, valid = weak_view(x, augment, torch.Generator().manual_seed(0))
    assert (~valid).any() and valid.any()
    assert torch.all(x_w[:, 0][~valid] < 0.5)  # outside: the zero padding (nearest vs bilinear at the rim)
    assert torch.allclose(x_w[:, 0][valid], torch.ones(()), atol=0.5)


def test_channel_dropout_drops_whole_channels_and_rescales():
    f = torch.ones(2, 64, 3, 3)
    out = channel_dropout(f, 0.5, torch.Generator().manual_seed(0))
    per_channel = out.flatten(2)
    assert torch.all((per_channel == 0).all(2) | (per_channel == 2.0).all(2))
    assert 10 < int((per_channel[:, :, 0] == 0).sum()) < 118
    assert torch.equal(channel_dropout(f, 0.0, torch.Generator()), f)


# --------------------------------------------------------------------------- local contrastive term


def _brute_force(z: torch.Tensor, labels: list[int], t: float) -> float:
    z = F.normalize(z, dim=1)
    n = len(labels)
    per_class: dict[int, list[float]] = {}
    for i in range(n):
        pos = [p for p in range(n) if p != i and labels[p] == labels[i]]
        neg = [q for q in range(n) if labels[q] != labels[i]]
        if not pos or not neg:
            continue
        terms = []
        for p in pos:
            s = math.exp(float(z[i] @ z[p]) / t)
            denom = s + sum(math.exp(float(z[i] @ z[q]) / t) for q in neg)
            terms.append(-math.log(s / denom))
        per_class.setdefault(labels[i], []).append(sum(terms) / len(terms))
    return sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)


def test_label_contrastive_loss_equals_brute_force():
    g = torch.Generator().manual_seed(0)
    for t in (0.1, 0.5):
        z = torch.randn(11, 5, generator=g, dtype=torch.float64)
        labels = [0, 0, 0, 1, 1, 3, 0, 1, 1, 1, 4]  # classes 2 absent; 3 and 4 one pixel each (no positive)
        got = label_contrastive_loss(z, torch.tensor(labels), temperature=t)
        assert math.isclose(float(got), _brute_force(z, labels, t), rel_tol=1e-5)
    # only one class: no negatives anywhere -> 0, still attached to the graph
    z = torch.randn(4, 3, requires_grad=True)
    zero = label_contrastive_loss(z, torch.zeros(4, dtype=torch.long))
    assert float(zero.detach()) == 0.0 and zero.requires_grad
    with pytest.raises(ValueError, match="temperature"):
        label_contrastive_loss(z, torch.zeros(4, dtype=torch.long), temperature=0)


def test_pixel_sampling_per_class_handles_absent_classes():
    labels = torch.tensor([[0, 0, 0, 0, 1], [1, 255, 3, 0, 0]])  # class 2 absent, 255 ignored
    idx = sample_pixels_per_class(labels, 4, per_class=3, generator=torch.Generator().manual_seed(0))
    picked = labels.reshape(-1)[idx].tolist()
    assert picked.count(0) == 3 and picked.count(1) == 2 and picked.count(3) == 1 and 2 not in picked
    assert 255 not in picked and len(set(idx.tolist())) == len(idx)  # without replacement
    again = sample_pixels_per_class(labels, 4, per_class=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)  # a function of the generator


# --------------------------------------------------------------------------- the task


def _batch(b: int = 4, seed: int = 0) -> dict:
    """Slices with a bright square (class 1) on noise."""
    g = torch.Generator().manual_seed(seed)
    x = 0.1 * torch.randn(b, 1, SIZE, SIZE, generator=g)
    y = torch.zeros(b, SIZE, SIZE, dtype=torch.long)
    for i in range(b):
        r, c = torch.randint(2, 9, (2,), generator=g).tolist()
        x[i, 0, r : r + 5, c : c + 5] += 1.0
        y[i, r : r + 5, c : c + 5] = 1
    return {"image": x, "label": y, "meta": {"group": [f"g{i}" for i in range(b)]}}


class _Unlabeled(torch.utils.data.Dataset):
    def __init__(self, n: int = 12) -> None:
        self.images = _batch(n, seed=7)["image"]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "meta": {"group": f"u{i}"}}


def _mode(name: str, net: UNet2D, label_prior: list[float] | None = None, **options) -> SemiMode:
    cfg = SemiConfig(mode=name, **options)
    return MODES[name](
        cfg,
        _Unlabeled(),
        net=net,
        num_classes=2,
        ignore_index=255,
        jitter_channels=[0],
        feature_channels=net.decoder_channels[-1],
        batch_size=4,
        label_prior=label_prior,
    )


def _tasks(name: str, **options) -> tuple[SegmentationTask, SemiSegmentationTask]:
    torch.manual_seed(0)
    net = UNet2D(1, 2, channels=(4, 8, 8))
    augment = BatchSpatialAugment(rotate_deg=10, scale=0.1, elastic_prob=0.0)
    plain = SegmentationTask(copy.deepcopy(net), 2, lr=1e-2, augment=augment)
    semi_net = copy.deepcopy(net)
    semi = SemiSegmentationTask(semi_net, 2, lr=1e-2, augment=augment, semi=_mode(name, semi_net, **options))
    return plain, semi


def test_the_registered_modes_are_the_configs():
    assert tuple(MODES) == SEMI_MODES
    assert SemiConfig(mode="self-training").unlabeled_loss == "dice-ce" and SemiConfig(mode="fixmatch").contrast == 0
    assert SemiConfig(mode="self-training").contrast == 0.1 and SemiConfig(mode="unimatch").unlabeled_loss == "ce"
    assert SemiConfig(mode="fixmatch", loss="dice-ce", contrast_weight=0.3).contrast == 0.3
    assert [ramp(4, s) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0] and ramp(0, 0) == 1.0


@pytest.mark.parametrize(
    ("name", "bn"),
    [("fixmatch", "batch"), ("fixmatch", "running"), ("unimatch", "batch"), ("self-training", "batch")],
)
def test_batchnorm_statistics_come_from_the_labeled_forward_alone(name: str, bn: str):
    """A semi-supervised step changes the running statistics exactly as the supervised step on the
    same labeled batch does: the unlabeled forwards (weak, strong, perturbed, teacher) add nothing."""
    plain, semi = _tasks(name, threshold=0.0, strong_bn=bn)  # threshold 0: every pixel pseudo-labeled
    batch = _batch()
    sup = plain.training_step(batch, 0)
    loss = semi.training_step(batch, 0)
    assert float(loss.detach()) > float(sup.detach()) + 1e-3  # the unlabeled part did add a loss
    buffers = dict(semi.net.named_buffers())
    for key, value in plain.net.named_buffers():
        assert torch.equal(buffers[key], value), key
    changed = [k for k, v in semi.net.named_buffers() if "running_mean" in k and v.abs().sum() > 0]
    assert changed  # and the labeled forward did update them
    assert all(m.track_running_stats for m in semi.net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_unlabeled_batchnorm_normalises_without_updating():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(3)
    bn.running_mean.fill_(2.0)
    bn.running_var.fill_(4.0)
    x = torch.randn(5, 3, 4, 4) * 3 + 1
    with unlabeled_batchnorm(bn, "batch"):
        out = bn(x)
    assert torch.allclose(out, F.batch_norm(x, None, None, training=True), atol=1e-5)
    with unlabeled_batchnorm(bn, "running"):
        out = bn(x)
    assert torch.allclose(out, (x - 2.0) / math.sqrt(4.0 + bn.eps), atol=1e-5)
    assert bn.training and bn.track_running_stats
    assert torch.all(bn.running_mean == 2.0) and torch.all(bn.running_var == 4.0) and int(bn.num_batches_tracked) == 0


def test_self_training_teacher_is_not_updated_by_gradients():
    _, task = _tasks("self-training", threshold=0.0, teacher_momentum=0.9)
    teacher = task.semi.teacher
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = task.configure_optimizers()["optimizer"]
    optimised = {id(p) for group in opt.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in teacher.parameters())
    assert all(not p.requires_grad for p in teacher.parameters())
    assert task.semi.contrast_head is not None  # self-training: the contrastive head trains
    assert all(id(p) in optimised for p in task.semi.contrast_head.parameters())
    loss = task.training_step(_batch(), 0)
    loss.backward()
    opt.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(t0[k], v) for k, v in teacher.state_dict().items())  # no change from the step
    task.semi.after_optimizer_step(task.net, 1)  # after optimiser step 1: the EMA update, and only it
    d = ema_decay(0.9, 0)
    student = task.net.state_dict()
    for k, v in teacher.state_dict().items():
        expected = d * t0[k] + (1 - d) * student[k] if v.is_floating_point() else student[k]
        assert torch.allclose(v, expected.to(v.dtype), atol=1e-6), k


def test_round_teacher_is_a_copy_at_the_end_of_each_round():
    _, task = _tasks("self-training", teacher="round", round_steps=3)
    teacher = task.semi.teacher
    t0 = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in task.net.parameters():
            p.add_(1.0)
    task.semi.after_optimizer_step(task.net, 2)
    assert all(torch.equal(t0[k], v) for k, v in teacher.state_dict().items())
    task.semi.after_optimizer_step(task.net, 3)
    assert all(torch.equal(task.net.state_dict()[k], v) for k, v in teacher.state_dict().items())
    assert task.semi.unlabeled_terms(task, torch.Generator()) is None  # first round (global step 0): no loss


def test_labeled_stream_is_that_of_the_supervised_run():
    """The unlabeled part draws from a generator of its own: with no confident pixel, a
    semi-supervised step is the supervised step exactly."""
    plain, semi = _tasks("fixmatch", threshold=1.0, threshold_mode="fixed")  # a random net is never that sure
    batch = _batch()
    a, b = plain.training_step(batch, 0), semi.training_step(batch, 0)
    assert torch.equal(a, b)
    g1, g2 = semi_generator(0, 0, 5), semi_generator(0, 0, 5)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    assert not torch.equal(torch.rand(3, generator=semi_generator(0, 0, 6)), torch.rand(3, generator=g1))


@pytest.mark.parametrize("name", SEMI_MODES)
def test_semi_supervised_loss_goes_down(name: str):
    """Full steps (unlabeled stream, views, backward, optimiser, teacher update) with every labeled
    pixel ignored, so that the unlabeled part alone trains: its loss (and the local contrastive
    term, on by default for self-training) of the last steps is well below that of the first."""
    torch.manual_seed(0)
    _, task = _tasks(name, threshold=0.0, teacher_momentum=0.5)  # every pixel: a fixed-size target
    opt = task.configure_optimizers()["optimizer"]
    seen: list[dict[str, float]] = []
    real_step = task.semi.step

    def spy(t, sup, g):
        loss, logs = real_step(t, sup, g)
        assert float(sup.loss.detach()) == 0.0
        seen.append(logs)
        return loss, logs

    task.semi.step = spy
    batch = _batch()
    batch["label"] = torch.full_like(batch["label"], 255)
    for step in range(30):
        opt.zero_grad()
        task.training_step(batch, step).backward()
        opt.step()
        task.semi.after_optimizer_step(task.net, step + 1)
    first, last = [s["semi_loss"] for s in seen[:5]], [s["semi_loss"] for s in seen[-5:]]
    assert sum(last) < 0.5 * sum(first), (first, last)


def test_local_contrastive_term_goes_down():
    """The term alone, on the labeled pixels of squares, trains the network and its head."""
    torch.manual_seed(0)
    net = UNet2D(1, 2, channels=(4, 8, 8))
    head = PixelProjectionHead(net.decoder_channels[-1], 16)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=1e-2)
    batch = _batch()
    losses = []
    for step in range(30):
        opt.zero_grad()
        features = net.decoder_features(batch["image"])[-1]
        loss = pixel_contrast(head, [features], [batch["label"]], 2, 32, 0.1, torch.Generator().manual_seed(step))
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5]), losses


def test_adaptive_threshold_task_state_is_module_state():
    _, task = _tasks("fixmatch", threshold_mode="adaptive", threshold=0.9)
    task.training_step(_batch(), 0)
    state = task.state_dict()
    assert "semi.class_thresholds.class_prob" in state
    assert not torch.allclose(state["semi.class_thresholds.class_prob"], torch.full((2,), 0.5))
    _, again = _tasks("fixmatch", threshold_mode="adaptive", threshold=0.9)
    again.load_state_dict(state)
    assert torch.equal(again.semi.class_thresholds.thresholds(), task.semi.class_thresholds.thresholds())
    assert replace(SemiConfig(), mode="fixmatch").enabled and not SemiConfig().enabled
