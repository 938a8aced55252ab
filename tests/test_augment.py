"""The augment presets (torchvision.transforms.v2): boxes, masks and every
per-instance field move together; nothing leaves the image; the same seed
gives the same sample; evaluation never augments; the configs compose."""

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from torchvision import tv_tensors

from detector.data import CocoInstances, make_synthetic_coco
from detector.data.augment import PRESETS, Augment, LargeScaleJitter, preset
from detector.training import SyntheticDataModule, train

from test_train_entry import CONFIGS

HEIGHT, WIDTH = 60, 80


def _sample():
    """An image with five instances whose boxes are exactly their masks' extents
    (rectangles and a disc), labels, has_mask, and a per-instance ``area``."""
    image = torch.randint(0, 256, (3, HEIGHT, WIDTH), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    masks = torch.zeros((5, HEIGHT, WIDTH), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate([(2, 3, 30, 25), (40, 10, 78, 58), (10, 35, 25, 59),
                                          (50, 0, 60, 8)]):
        masks[i, y1:y2, x1:x2] = 1
    yy, xx = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    masks[4] = ((yy - 30) ** 2 + (xx - 35) ** 2 <= 12**2).to(torch.uint8)
    target = {"boxes": tv_tensors.BoundingBoxes(_mask_boxes(masks), format="XYXY",
                                                canvas_size=(HEIGHT, WIDTH)),
              "labels": torch.tensor([1, 2, 3, 1, 2]), "masks": tv_tensors.Mask(masks),
              "has_mask": torch.ones(5, dtype=torch.bool),
              "area": masks.flatten(1).sum(1).float(), "image_id": 7}
    return tv_tensors.Image(image), target


def _mask_boxes(masks):
    boxes = []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0] * 4)
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def _run(transform, seed):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(*_sample())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_keeps_boxes_masks_and_fields_together(name):
    transform = preset(name, lsj_size=96)
    dropped = False
    for seed in range(40):
        image, target = _run(transform, seed)
        height, width = image.shape[-2:]
        boxes = target["boxes"].as_subclass(torch.Tensor)
        masks = target["masks"].as_subclass(torch.Tensor)
        count = len(boxes)
        dropped |= count < 5
        assert masks.shape == (count, height, width)
        for key in ("labels", "has_mask", "area"):  # every per-instance field follows
            assert target[key].shape == (count,), (name, seed, key)
        assert target["image_id"] == 7
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert ((boxes[:, 2:] - boxes[:, :2]) >= 1).all()  # nothing below the minimum size
        filled = masks.flatten(1).sum(1) > 0
        # a resize by nearest neighbour may empty a mask of about a pixel only
        assert ((boxes[~filled, 2:] - boxes[~filled, :2]) < 2).all(), (name, seed)
        # within a pixel of the image before any resize (lsj enlarges up to 2x, and the
        # masks' nearest-neighbour resize samples pixel corners, not centres)
        tolerance = 2.0 if name == "lsj" else 1.0
        assert torch.allclose(_mask_boxes(masks[filled]), boxes[filled], atol=tolerance), (
            name, seed)
        # the fields name the same instance as before: areas and labels pair up as given
        source = _sample()[1]
        for label, area in zip(target["labels"].tolist(), target["area"].tolist()):
            assert (label, area) in zip(source["labels"].tolist(), source["area"].tolist())
    if name in ("crop", "lsj"):
        assert dropped  # the check above did see instances removed


def test_augment_drops_fields_of_removed_instances_by_hand():
    """A crop that leaves the first instance out: its label, has_mask and area go too."""
    crop = Augment([lambda image, target: _crop_left(image, target)])
    image, target = crop(*_sample())
    assert target["labels"].tolist() == [2, 1, 2]
    assert target["area"].tolist() == _sample()[1]["area"][[1, 3, 4]].tolist()
    assert target["masks"].shape[0] == 3 and target["has_mask"].shape == (3,)


def _crop_left(image, target):
    from torchvision.transforms.v2 import functional as F
    return F.crop(image, 0, 38, HEIGHT, 42), {
        **target, "boxes": F.crop(target["boxes"], 0, 38, HEIGHT, 42),
        "masks": F.crop(target["masks"], 0, 38, HEIGHT, 42)}


def test_an_image_left_without_instances_is_a_background_image():
    empty = Augment([lambda image, target: (image, {**target, "boxes": tv_tensors.wrap(
        target["boxes"] * 0, like=target["boxes"])})])
    image, target = empty(*_sample())
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, HEIGHT, WIDTH)
    assert target["labels"].shape == (0,) and image.shape == (3, HEIGHT, WIDTH)
    # and the crop preset leaves an image without instances as it is
    sample = _sample()
    boxes, masks = sample[1]["boxes"], sample[1]["masks"]
    bare = {**sample[1], "boxes": tv_tensors.wrap(boxes[:0], like=boxes),
            "masks": tv_tensors.wrap(masks[:0], like=masks)}
    bare.update({key: sample[1][key][:0] for key in ("labels", "has_mask", "area")})
    out_image, out = preset("crop", flip_probability=0.0)(sample[0], bare)
    assert torch.equal(out_image, sample[0]) and out["boxes"].shape == (0, 4)


@pytest.mark.parametrize("height, width", [(3, 40), (40, 3), (1, 1)])
def test_crop_leaves_an_image_too_thin_to_crop_as_it_is(height, width):
    """RandomIoUCrop alone divides by a crop side that rounds to 0 on an image
    of 3 pixels or fewer; the crop preset leaves such an image uncropped."""
    image = tv_tensors.Image(torch.rand(3, height, width))
    boxes = tv_tensors.BoundingBoxes([[0, 0, width, height]], format="XYXY",
                                     canvas_size=(height, width))
    target = {"boxes": boxes, "labels": torch.tensor([1]),
              "masks": tv_tensors.Mask(torch.ones(1, height, width, dtype=torch.uint8))}
    crop = preset("crop", flip_probability=0.0)
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out = crop(image, target)
        assert torch.equal(out_image, image) and out["boxes"].tolist() == boxes.tolist()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_synthetic_coco(tmp_path_factory.mktemp("aug"), "train", 3, (64, 80))


@pytest.mark.parametrize("name", PRESETS)
def test_same_seed_same_sample(synthetic, name):
    dataset = CocoInstances(*synthetic, preset(name, lsj_size=72))
    first, again, other = dataset[1, 123], dataset[1, 123], dataset[1, 456]
    assert torch.equal(first[0], again[0])
    for key in ("boxes", "labels", "masks"):
        assert torch.equal(first[1][key], again[1][key])
    if name != "flip":  # a flip has two outcomes; the others have many
        assert first[0].shape != other[0].shape or not torch.equal(first[0], other[0])


def test_evaluation_never_augments(tmp_path):
    augment = preset("lsj", lsj_size=64)
    data = SyntheticDataModule(str(tmp_path), num_train=2, num_val=2, num_test=2,
                               image_size=(48, 64), augment=augment)
    assert data.dataset("train").transforms is augment
    assert data.dataset("val").transforms is None and data.dataset("test").transforms is None


def test_bad_settings_are_named():
    with pytest.raises(TypeError, match="augment step 0"):
        Augment([{"p": 0.5}])
    with pytest.raises(ValueError, match="min_size"):
        Augment([], min_size=0)
    with pytest.raises(ValueError, match="large-scale jitter size"):
        LargeScaleJitter(0)
    with pytest.raises(ValueError, match="unknown augment preset 'mosaic'"):
        preset("mosaic")


@pytest.mark.parametrize("name", PRESETS)
def test_config_group_composes(name):
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=[f"augment={name}", "data.flip_probability=0.25"])
    augment = hydra.utils.instantiate(cfg.data.augment)
    assert isinstance(augment, Augment)
    assert augment.steps[0].p == 0.25  # every preset starts with the flip
    image, target = _run(augment, 0)
    assert len(target["boxes"]) == len(target["labels"])
    if name == "lsj":  # the square is the model's max_size, before the model's resize
        assert image.shape[-2:] == (cfg.model.transform.max_size,) * 2


def _steps(*overrides) -> list[str]:
    with initialize_config_dir(config_dir=CONFIGS, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    return [type(s).__name__ for s in hydra.utils.instantiate(cfg.data.augment).steps]


FLIP, CROP = ["RandomHorizontalFlip"], ["RandomHorizontalFlip", "WithInstances"]


@pytest.mark.parametrize("overrides, expected", [
    ([], FLIP),  # the synthetic shapes (the README's numbers) keep the flip
    (["data=coins"], CROP), (["data=galaxies"], CROP),  # the real-image data choose crop,
    (["data=coco"], CROP), (["data=voc"], CROP),  # the augmentation study's winner
    (["data=coco", "augment=flip"], FLIP), (["data=coins", "augment=lsj"],
                                            ["RandomHorizontalFlip", "LargeScaleJitter"]),
    (["experiment=finetune"], CROP),  # a small dataset of the user's
    # pinned: the studies as they were run, and the 1x recipe (flips only)
    (["experiment=real_roi_ops_c4", "data=galaxies"], FLIP),
    (["experiment=real_roi_ops_fpn"], FLIP), (["experiment=coco_r50_fpn_1x"], FLIP),
    (["experiment=real_augment", "augment=photometric"], ["RandomHorizontalFlip", "ColorJitter"]),
])
def test_default_augmentation_follows_the_data(overrides, expected):
    assert _steps(*overrides) == expected


def test_a_users_data_config_on_coco_inherits_its_augmentation(tmp_path):
    """docs/training.md's "Your own configs": a data file that extends coco."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mydata.yaml").write_text(
        "# @package _global_\ndefaults:\n  - coco\n")
    assert _steps(f"hydra.searchpath=[file://{tmp_path}]", "data=mydata") == CROP


@pytest.mark.slow  # about 50 s on 2 cores: three short runs
def test_resume_with_lsj_and_grouping_ends_as_the_uninterrupted_run(tmp_path):
    """Stopped mid-epoch and resumed, a run with the most random preset (and the
    grouped, repeat-factor loader) ends with the uninterrupted run's weights."""
    from test_train_entry import _cfg, _final_state

    common = ["data.num_train=6", "trainer.max_epochs=2", "test=false", "augment=lsj",
              "data.group_by_aspect_ratio=true", "data.sampler=repeat_factor",
              "data.repeat_threshold=0.9"]
    train(_cfg(tmp_path, *common, run="straight"))
    stopper = ["+callbacks.stop._target_=test_train_entry.SignalAtStep",
               "+callbacks.stop.step=4"]
    with pytest.raises(SystemExit):
        train(_cfg(tmp_path, *common, *stopper, run="stopped"))
    stopped_at = tmp_path / "stopped" / "checkpoints" / "last.ckpt"
    assert torch.load(stopped_at, weights_only=True)["global_step"] == 4
    train(_cfg(tmp_path, *common, f"ckpt_path={stopped_at}", run="resumed"))
    straight, resumed = _final_state(tmp_path / "straight"), _final_state(tmp_path / "resumed")
    assert resumed["global_step"] == straight["global_step"] > 4
    for name, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][name]), name
