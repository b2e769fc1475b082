import math

import torch

from segcore.tasks.segmentation import class_counts, score_from_counts


def test_class_counts_known_answer_with_ignore():
    pred = torch.tensor([[0, 1], [1, 2]])
    target = torch.tensor([[0, 1], [2, 255]])
    c = class_counts(pred, target, 3, 255)
    # class 0: tp 1; class 1: tp 1, fp 1 (pixel (1,0)); class 2: fn 1 (pixel (1,0)); (1,1) ignored
    assert c.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_dice_score_is_mean_over_groups_of_mean_foreground_dice():
    counts = {
        "a": torch.tensor([[9, 0, 0], [2, 1, 1], [0, 0, 0]]),  # class 1 Dice 4/6; class 2 absent -> skipped
        "b": torch.tensor([[9, 0, 0], [1, 0, 0], [1, 1, 0]]),  # class 1 Dice 1; class 2 Dice 2/3
    }
    expected = (4 / 6 + (1 + 2 / 3) / 2) / 2
    assert math.isclose(score_from_counts(counts, "dice"), expected)


def test_miou_pools_counts():
    counts = {"a": torch.tensor([[3, 1, 0], [1, 0, 1]]), "b": torch.tensor([[1, 0, 1], [2, 1, 0]])}
    # pooled: class 0 tp 4 fp 1 fn 1 -> 4/6; class 1 tp 3 fp 1 fn 1 -> 3/5
    assert math.isclose(score_from_counts(counts, "miou"), (4 / 6 + 3 / 5) / 2)
    assert math.isnan(score_from_counts({}, "miou"))


def test_weight_average_is_validated_and_kept():
    import warnings

    import lightning as L
    import pytest

    from segcore.networks.unet import UNet2D
    from segcore.runtime.sampling import eval_loader, step_loader
    from segcore.tasks.segmentation import SegmentationTask

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    items = [
        {
            "image": torch.randn(1, 16, 16, generator=g),
            "label": (torch.rand(16, 16, generator=g) > 0.5).long(),
            "meta": {"group": f"g{i}"},
        }
        for i in range(6)
    ]
    task = SegmentationTask(UNet2D(1, 2, channels=(4, 8)), 2, lr=1e-2, max_steps=3, val_metric="miou", weight_ema=0.5)
    seen = []  # the raw weights after each optimiser step

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append({k: v.detach().clone() for k, v in pl_module.net.state_dict().items()})

    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=3,
        max_epochs=-1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=3,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=[Record()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, step_loader(items, 2, 3, seed=0), eval_loader(items, 6))
    # recompute from the initial weights: ema_t = d_t ema_{t-1} + (1 - d_t) w_t, d_t = min(0.5, (1 + t) / (10 + t))
    torch.manual_seed(0)
    ema = {k: v.detach().clone().float() for k, v in UNet2D(1, 2, channels=(4, 8)).state_dict().items()}
    for t, w in enumerate(seen):
        d = min(0.5, (1 + t) / (10 + t))
        ema = {k: (d * ema[k] + (1 - d) * w[k].float()) if w[k].is_floating_point() else w[k] for k in ema}
    assert len(seen) == 3 and task.best_step == 3
    for k, v in task.ema_net.state_dict().items():
        assert torch.allclose(v.float(), ema[k].float(), atol=1e-6), k
        assert torch.equal(task.best_state[k], v)  # the average is what validation scored and kept
    assert any(not torch.equal(task.best_state[k], seen[-1][k]) for k in ema)  # and it is not the raw weights
    with pytest.raises(ValueError, match="weight_ema"):
        SegmentationTask(UNet2D(1, 2, channels=(4, 8)), 2, weight_ema=1.0)


def test_pretrained_parameters_train_at_a_scaled_learning_rate():
    import pytest

    from segcore.networks.unet import UNet2D
    from segcore.tasks.segmentation import SegmentationTask

    net = UNet2D(1, 2, channels=(4, 8))
    names = [n for n, _ in net.named_parameters() if not n.startswith("head.")]
    task = SegmentationTask(net, 2, lr=0.01, pretrained=[*names, "encoders.0.bn.running_mean"], pretrained_lr_scale=0.1)
    groups = task.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == [pytest.approx(0.001), 0.01]
    params = dict(net.named_parameters())
    assert {id(p) for p in groups[0]["params"]} == {id(params[n]) for n in names}
    assert {id(p) for p in groups[1]["params"]} == {id(p) for n, p in params.items() if n.startswith("head.")}
    plain = SegmentationTask(UNet2D(1, 2, channels=(4, 8)), 2, lr=0.01, pretrained=names)  # scale 1: one group
    assert len(plain.configure_optimizers()["optimizer"].param_groups) == 1
    with pytest.raises(ValueError, match="pretrained_lr_scale"):
        SegmentationTask(UNet2D(1, 2, channels=(4, 8)), 2, pretrained_lr_scale=0)


def test_optimizer_is_multi_tensor_and_updates_exactly_as_the_per_parameter_loop():
    from segcore.networks.unet import UNet2D
    from segcore.tasks.segmentation import SegmentationTask

    torch.manual_seed(0)
    net = UNet2D(1, 3, channels=(4, 8, 8)).to(memory_format=torch.channels_last)
    task = SegmentationTask(net, 3, lr=0.01)
    opt = task.configure_optimizers()["optimizer"]
    assert opt.defaults["foreach"] is True
    loop_net = UNet2D(1, 3, channels=(4, 8, 8)).to(memory_format=torch.channels_last)
    loop_net.load_state_dict(net.state_dict())
    start = net.state_dict()["head.weight"].clone()
    loop = torch.optim.AdamW(loop_net.parameters(), lr=0.01, weight_decay=task.weight_decay, foreach=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(2, 1, 16, 16, generator=g)
        for model, o in ((net, opt), (loop_net, loop)):
            o.zero_grad()
            model(x).square().mean().backward()
            o.step()
    assert all(
        torch.equal(a, b) for a, b in zip(net.state_dict().values(), loop_net.state_dict().values(), strict=True)
    )
    assert not torch.equal(net.state_dict()["head.weight"], start)  # it did train
