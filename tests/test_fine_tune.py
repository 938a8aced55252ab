"""Starting from a trained detector (model.init_weights): what fits is loaded,
the class-specific layers are new but carry the rows of classes known by name,
what does not fit is refused by name, frozen parts do not train, and a run
started this way names the data's classes."""

import json
import re
from pathlib import Path

import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn

from detector import GeneralizedRCNN, load
from detector.modeling.builders import fpn_rcnn
from detector.weights.fine_tune import class_specific, init_from, matched_classes, read_source
from detector.modeling.parts import freeze
from detector.weights.torchvision_names import coco_class_names, torchvision_key
from conftest import SPEC

NAMES = ["__background__", "dog", "widget", "person"]  # COCO labels 18 and 1, one new


@pytest.fixture(scope="module")
def coco_file(tmp_path_factory):
    """A torchvision maskrcnn_resnet50_fpn state dict with 91 classes and random
    weights, saved as users save the COCO_V1 file; and the state dict."""
    torch.manual_seed(0)
    state = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                  num_classes=91).state_dict()
    path = tmp_path_factory.mktemp("coco") / "maskrcnn_coco.pth"
    torch.save(state, path)
    return path, state


def _renamed(state):
    return {torchvision_key(k): v for k, v in state.items()
            if not k.endswith("num_batches_tracked")}


def test_torchvision_coco_weights_into_a_model_with_three_classes(coco_file):
    path, state = coco_file
    model = fpn_rcnn(4, class_names=NAMES, init_weights=str(path))
    source = _renamed(state)
    loaded = model.state_dict()
    shared = [k for k in loaded if class_specific(k) is None
              and not k.endswith("num_batches_tracked")]
    parts = {k.split(".")[0] + "." + k.split(".")[1] for k in shared}
    assert {"backbone.body", "backbone.fpn", "rpn.head", "roi_heads.box_branch",
            "roi_heads.mask_branch"} <= parts
    for key in shared:  # every backbone, FPN, RPN, box and mask head tensor is the file's
        assert torch.equal(loaded[key], source[key]), key
    predictor = model.roi_heads.box_branch.predictor
    assert predictor.cls_score.weight.shape == (4, 1024)
    assert predictor.bbox_pred.weight.shape == (16, 1024)
    assert model.roi_heads.mask_branch.predictor.logits.weight.shape == (4, 256, 1, 1)
    # rows of the classes COCO knows by name are COCO's; the new class's are not
    coco = coco_class_names()
    for label, name in ((1, "dog"), (3, "person")):
        source_label = coco.index(name)
        assert torch.equal(predictor.cls_score.weight[label],
                           source["roi_heads.box_branch.predictor.cls_score.weight"][source_label])
        assert torch.equal(predictor.bbox_pred.weight[4 * label:4 * label + 4],
                           source["roi_heads.box_branch.predictor.bbox_pred.weight"][
                               4 * source_label:4 * source_label + 4])
        assert torch.equal(
            model.roi_heads.mask_branch.predictor.logits.bias[label],
            source["roi_heads.mask_branch.predictor.logits.bias"][source_label])
    widget = predictor.cls_score.weight[2]
    assert not any(torch.equal(widget, row)
                   for row in source["roi_heads.box_branch.predictor.cls_score.weight"])
    report = model.init_report
    assert [(t, s, n) for t, s, n in report.classes_carried] == [
        (0, 0, "background"), (1, 18, "dog"), (3, 1, "person")]
    assert len(report.class_specific) == 6 and not report.left_out
    table = report.table()
    assert "dog (source label 18)" in table and "person (source label 1)" in table
    # torchvision's weights expect ImageNet's normalisation, and the model keeps it
    assert torch.allclose(model.transform.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


def test_class_map_none_keeps_every_class_row_new(coco_file):
    path, state = coco_file
    model = fpn_rcnn(4, class_names=NAMES, init_weights=str(path), init_class_map="none")
    rows = _renamed(state)["roi_heads.box_branch.predictor.cls_score.weight"]
    weight = model.roi_heads.box_branch.predictor.cls_score.weight
    assert not any(torch.equal(weight[3], row) for row in rows)
    assert model.init_report.classes_carried == []
    with pytest.raises(ValueError, match="init_class_map must be one of"):
        fpn_rcnn(4, class_names=NAMES, init_weights=str(path), init_class_map="by_name")


def test_names_match_without_case_and_padding_names_never_match():
    source = ["__background__", "Person", "N/A", "car"]
    assert matched_classes(["__background__", "car", "person", "n/a"], source) == [
        (0, 0, "background"), (1, 3, "car"), (2, 1, "person")]
    assert matched_classes(None, source) == []


def test_a_file_of_another_architecture_is_refused_naming_the_keys(coco_file, tmp_path):
    path, _ = coco_file
    # the project's small CPU model: ResNet-18 at half width, 64-channel pyramid
    with pytest.raises(ValueError, match=r"does not fit the model: .*other shapes.*"
                                         r"backbone\.body\.stem\.conv1\.weight"):
        fpn_rcnn(4, depth=18, backbone_width=32, fpn_channels=64, representation_size=256,
                 mask_channels=64, class_names=NAMES, init_weights=str(path))
    # a Faster R-CNN file has no mask head for a Mask R-CNN
    faster = tmp_path / "faster.pth"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                       num_classes=91).state_dict(), faster)
    with pytest.raises(ValueError, match=r"missing from the file \(\d+\): "
                                         r"roi_heads\.mask_branch\.head"):
        fpn_rcnn(4, class_names=NAMES, init_weights=str(faster))
    # an ImageNet classifier is not a detector
    classifier = tmp_path / "resnet50.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 2048)},
               classifier)
    with pytest.raises(ValueError, match="not a detector's state dict.*model.backbone_weights"):
        read_source(classifier)
    with pytest.raises(FileNotFoundError, match="model.init_weights file not found"):
        read_source(tmp_path / "missing.pth")


def test_init_skip_patterns(coco_file):
    path, state = coco_file
    # a Mask R-CNN file into a Faster R-CNN: its mask branch is in the way...
    with pytest.raises(ValueError, match=r"in the file but not in the model \(\d+\): "
                                         r"roi_heads\.mask_branch"):
        fpn_rcnn(4, masks=False, class_names=NAMES, init_weights=str(path))
    # ...until it is left out by name; and the RPN is kept at its initialisation
    model = fpn_rcnn(4, masks=False, class_names=NAMES, init_weights=str(path),
                     init_skip=["roi_heads.mask_branch.*", "rpn.*"])
    report = model.init_report
    assert report.left_out and all(k.startswith("roi_heads.mask_branch.")
                                   for k in report.left_out)
    assert report.kept_initialised == [k for k in model.state_dict() if k.startswith("rpn.")]
    source = _renamed(state)
    assert not torch.equal(model.rpn.head.conv.weight, source["rpn.head.conv.weight"])
    assert torch.equal(model.backbone.body.stem.conv1.weight,
                       source["backbone.body.stem.conv1.weight"])


def test_frozen_parts_do_not_train_and_their_batchnorm_is_frozen():
    model = fpn_rcnn(3, **{k: v for k, v in SPEC.items() if k not in (
        "_target_", "num_classes", "box_op", "transform")})
    untrained = freeze(model, ["backbone", "fpn"])
    assert [what for what, _ in untrained] == ["backbone frozen (model.freeze=['backbone', "
                                               "'fpn'])", "fpn frozen (model.freeze=['backbone', "
                                               "'fpn'])"]
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.rpn.parameters())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.modules())
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.train()
    images = [torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 50.0]]), "labels": torch.tensor([1]),
                "masks": torch.zeros(1, 96, 128, dtype=torch.uint8)}]
    targets[0]["masks"][0, 10:50, 10:60] = 1
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        sum(model(images, targets).values()).backward()
        optimizer.step()
        optimizer.zero_grad()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats included
    with pytest.raises(ValueError, match=r"unknown parts \['head'\]"):
        freeze(model, ["head"])
    box_only = fpn_rcnn(3, masks=False, depth=18, backbone_width=16, norm="bn",
                        trainable_stages=5, fpn_channels=32)
    with pytest.raises(ValueError, match="has no mask_head"):
        freeze(box_only, ["mask_head"])


def test_frozen_parts_loaded_from_the_file_count_as_trained(coco_file):
    path, _ = coco_file
    model = fpn_rcnn(4, class_names=NAMES, init_weights=str(path),
                     freeze=["backbone", "fpn", "rpn"])
    assert model.untrained_frozen == []
    assert not any(p.requires_grad for p in model.rpn.parameters())
    assert all(p.requires_grad for p in model.roi_heads.parameters())


def test_a_source_reads_checkpoints_and_names_torchvision_files(coco_file, trained):
    path, _ = coco_file
    source = read_source(path)
    assert source.kind == "torchvision" and source.class_names[1] == "person"
    ckpt, module, _ = trained
    source = read_source(ckpt)
    assert source.kind == "checkpoint"
    assert source.class_names == module.model.class_names
    assert set(source.state) == {k for k in module.model.state_dict()
                                 if not k.endswith("num_batches_tracked")}


def test_a_checkpoint_into_a_model_with_other_classes(trained):
    ckpt, module, _ = trained
    names = ["__background__", "ring", "pentagon", "circle"]
    spec = {k: v for k, v in SPEC.items() if k not in ("_target_", "num_classes", "box_op",
                                                       "transform")}
    model = fpn_rcnn(4, **spec, class_names=names, init_weights=str(ckpt))
    source = module.model
    assert isinstance(model, GeneralizedRCNN)
    source_names = source.class_names
    weight = model.roi_heads.box_branch.predictor.cls_score.weight
    for label, name in ((1, "ring"), (3, "circle")):
        assert torch.equal(weight[label],
                           source.roi_heads.box_branch.predictor.cls_score.weight[
                               source_names.index(name)])
    assert torch.equal(model.backbone.body.stem.conv1.weight, source.backbone.body.stem.conv1.weight)


def test_the_recorded_normalisation_is_the_models_in_any_stage(trained, tmp_path):
    """Validating before fitting builds the model outside fit: the specification
    kept for the checkpoints still names the normalisation the model uses."""
    import pytorch_lightning as pl

    from detector.training import DetectionModule

    ckpt, _, data = trained
    source = torch.load(ckpt, map_location="cpu", weights_only=True)
    source["hyper_parameters"]["model"]["transform"]["mean"] = [0.5, 0.4, 0.3]
    weights = tmp_path / "source.ckpt"
    torch.save(source, weights)
    module = DetectionModule({**SPEC, "init_weights": str(weights)})
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, limit_val_batches=1, max_steps=1,
                         num_sanity_val_steps=0, default_root_dir=tmp_path)
    trainer.validate(module, data)
    assert module.model.transform.mean.flatten().tolist() == pytest.approx([0.5, 0.4, 0.3])
    assert module.hparams.model["transform"]["mean"] == [0.5, 0.4, 0.3]


def test_the_older_layout_of_the_released_coco_files_loads_alike(coco_file, tmp_path):
    """The COCO files torchvision released before 0.13 name the FPN's
    convolutions inner_blocks.N.weight (no .0.): the same tensors load."""
    path, state = coco_file
    older = {re.sub(r"^(backbone\.fpn\.(?:inner|layer)_blocks\.\d+)\.0\.", r"\1.", k): v
             for k, v in state.items()}
    assert any(k == "backbone.fpn.inner_blocks.0.weight" for k in older)
    old_path = tmp_path / "older.pth"
    torch.save(older, old_path)
    new, old = read_source(path), read_source(old_path)
    assert new.state.keys() == old.state.keys()
    assert all(torch.equal(new.state[k], old.state[k]) for k in new.state)


def test_c4_res5_frozen_as_the_mask_head_holds_imagenet_weights(tmp_path):
    """C4's mask head is the box head's res5 (one module, two names): loaded
    from backbone_weights under either name, freezing it is not refused."""
    import torchvision

    from detector.modeling.builders import c4_rcnn

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    for part in ("box_head", "mask_head"):
        model = c4_rcnn(3, depth=18, backbone_weights=str(weights), freeze=[part])
        assert model.untrained_frozen == [], part
        assert not any(p.requires_grad for p in model.roi_heads.box_branch.head.parameters())
