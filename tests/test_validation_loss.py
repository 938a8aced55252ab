"""Validation loss: the training loss terms on held-out images, with the norms
and the resize as in evaluation, no gradient, repeatable, leaving the model's
modes, statistics and the training's random state as they were; logged at
every validation beside the APs."""

import pytorch_lightning as pl
import torch

from detector.loading.spec import build_model
from detector.training import DetectionModule, SyntheticDataModule

from conftest import SPEC


def _model(**transform):
    torch.manual_seed(0)
    spec = {**SPEC, "num_classes": 7, "transform": {**SPEC["transform"], **transform}}
    return build_model(spec)  # norm "bn": BatchNorm that trains


def _batch(tmp_path):
    data = SyntheticDataModule(str(tmp_path / "data"), num_train=2, num_val=2, num_test=0,
                               image_size=(96, 128), batch_size=2)
    data.setup("fit")
    images, targets = zip(*(data.dataset("val")[i] for i in range(2)))
    return list(images), list(targets)


def test_same_terms_no_gradient_repeatable_and_nothing_disturbed(tmp_path):
    model = _model().eval()
    images, targets = _batch(tmp_path)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    first = model.validation_losses(images, targets, seed=3)
    again = model.validation_losses(images, targets, seed=3)
    assert not model.training and not any(m.training for m in model.modules())
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in model.state_dict().items():  # BatchNorm statistics included
        assert torch.equal(value, state[key]), key
    model.train()
    training = model(images, targets)
    assert set(first) == set(training)
    assert all(torch.isfinite(v) and not v.requires_grad for v in first.values())
    assert all(torch.equal(first[k], again[k]) for k in first)
    model.validation_losses(images, targets)
    assert all(m.training for m in model.modules()), "train mode not restored"


def test_one_backbone_pass_gives_the_same_detections_and_losses(tmp_path):
    """What validation_step uses: the detections of model(images) and the losses of
    validation_losses(), exactly, from one pass of the backbone."""
    model = _model(min_size=80, max_size=110).eval()  # a resize factor other than 1
    images, targets = _batch(tmp_path)
    calls = []
    model.backbone.register_forward_hook(lambda *_: calls.append(1))
    detections, losses = model.detections_and_validation_losses(images, targets, seed=4)
    assert len(calls) == 1
    rng = torch.get_rng_state()
    alone = model.validation_losses(images, targets, seed=4)
    assert torch.equal(torch.get_rng_state(), rng)
    assert set(losses) == set(alone) and all(torch.equal(losses[k], alone[k]) for k in alone)
    for ours, plain in zip(detections, model(images)):
        assert set(ours) == set(plain) and len(plain["boxes"]) > 0
        assert all(torch.equal(ours[k], plain[k]) for k in plain)
    assert not any(m.training for m in model.modules())


def test_norms_in_eval_mode_and_the_evaluation_resize(tmp_path):
    """Against the losses computed by hand: the model in train mode with every
    BatchNorm put in eval mode, at the evaluation size, after the same seed.
    Training's batch statistics give other numbers."""
    images, targets = _batch(tmp_path)
    jittered = _model(min_size=[64, 80, 96])  # trains at a random one of three sizes
    losses = jittered.validation_losses(images, targets, seed=5)

    by_hand = _model(min_size=96).train()  # the evaluation size, the same weights
    by_hand.load_state_dict(jittered.state_dict())
    for module in by_hand.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    with torch.no_grad():
        torch.manual_seed(5)
        expected = by_hand(images, targets)
        by_hand.train()
        torch.manual_seed(5)
        batch_statistics = by_hand(images, targets)
    for key in expected:
        torch.testing.assert_close(losses[key], expected[key], msg=key)
    assert any(not torch.allclose(expected[k], batch_statistics[k]) for k in expected)


def test_logged_at_every_validation(tmp_path):
    data = SyntheticDataModule(str(tmp_path / "data"), num_train=4, num_val=2, num_test=0,
                               image_size=(96, 128), batch_size=2)
    module = DetectionModule(dict(SPEC), optimizer="adamw", lr=1e-3, warmup_steps=1)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False,
                         num_sanity_val_steps=0, default_root_dir=tmp_path,
                         enable_model_summary=False)
    trainer.fit(module, data)
    metrics = trainer.callback_metrics
    terms = {k for k in metrics if k.startswith("val/loss_")}
    assert terms == {f"val/{k}" for k in ("loss_rpn_objectness", "loss_rpn_box",
                                          "loss_classifier", "loss_box_reg", "loss_mask")}
    total = sum(float(metrics[k]) for k in terms)
    assert abs(float(metrics["val/loss"]) - total) < 1e-4 * max(1.0, total)
    assert "val/segm_AP" in metrics
