"""Backbones and the box heads cut from them: shapes, frozen parts, local weights.

Nothing is downloaded: the "ImageNet" weights are a seeded torchvision model
saved to tmp_path, and loading them is checked against running that model's own
layers (the ResNets in float64, since frozen BatchNorm rounds differently from
BatchNorm in float32).
"""

import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from detector.modeling.backbones import resnet as resnet_module
from detector.modeling.backbones import (
    ResNetC4,
    ResNetC5,
    ResNetRes5Head,
    VGG16BoxHead,
    VGG16Conv5,
    freeze_batchnorm,
    load_local_weights,
)

HEIGHT, WIDTH = 64, 96
RES4_CHANNELS = {18: 256, 50: 1024}
RES5_CHANNELS = {18: 512, 50: 2048}


def _image(dtype=torch.float32):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(1, 3, HEIGHT, WIDTH, generator=generator, dtype=dtype)


def _randomize_batchnorm(model):
    """Non-trivial statistics and affine parameters, so that copying them matters."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0.0, 0.1)


@pytest.fixture(scope="module", params=[18, 50])
def resnet_file(request, tmp_path_factory):
    """(depth, seeded torchvision ResNet in float64 eval mode, path of its saved state dict)."""
    depth = request.param
    torch.manual_seed(depth)
    net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    _randomize_batchnorm(net)
    path = tmp_path_factory.mktemp("weights") / f"resnet{depth}.pt"
    torch.save(net.state_dict(), path)
    return depth, net.double().eval(), path


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    torch.manual_seed(16)
    net = torchvision.models.vgg16(weights=None)
    path = tmp_path_factory.mktemp("weights") / "vgg16.pt"
    torch.save(net.state_dict(), path)
    return net.eval(), path


def _no_batchnorm_left(model):
    return not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


# ---- shapes and strides ---------------------------------------------------------------------


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize(
    "cls, name, channels", [(ResNetC4, "res4", RES4_CHANNELS), (ResNetC5, "res5", RES5_CHANNELS)]
)
def test_resnet_trunk_output(cls, name, channels, depth):
    model = cls(depth)
    stride = model.strides[name]
    assert list(model.strides) == [name]
    assert stride == (16 if name == "res4" else 32)
    assert model.out_channels == channels[depth]
    features = model(_image())
    assert list(features) == [name]
    assert features[name].shape == (1, channels[depth], HEIGHT // stride, WIDTH // stride)


@pytest.mark.parametrize("depth", [18, 50])
def test_res5_head_output(depth):
    head = ResNetRes5Head(depth)
    assert head.out_channels == RES5_CHANNELS[depth]
    rois = torch.randn(3, RES4_CHANNELS[depth], 14, 14)
    assert head(rois).shape == (3, RES5_CHANNELS[depth])
    assert head(rois, pool=False).shape == (3, RES5_CHANNELS[depth], 7, 7)


def test_vgg_output():
    model = VGG16Conv5()
    assert model.out_channels == 512 and model.strides == {"conv5": 16}
    features = model(_image())
    assert list(features) == ["conv5"]
    assert features["conv5"].shape == (1, 512, HEIGHT // 16, WIDTH // 16)


def test_vgg_box_head_output():
    head = VGG16BoxHead()
    assert head.out_channels == 4096
    assert not any(isinstance(m, nn.Dropout) for m in head.modules()), "dropout is off by default"
    assert head(torch.randn(2, 512, 7, 7)).shape == (2, 4096)


def test_vgg_box_head_dropout_is_a_parameter():
    head = VGG16BoxHead(dropout=0.5)
    assert [m.p for m in head.modules() if isinstance(m, nn.Dropout)] == [0.5]
    x = torch.randn(2, 512, 7, 7)
    assert not torch.equal(head.train()(x), head(x))
    torch.testing.assert_close(head.eval()(x), head(x))
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        VGG16BoxHead(dropout=1.0)


# ---- frozen BatchNorm and frozen stages -----------------------------------------------------


def test_freeze_batchnorm_keeps_the_eval_output():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()))
    _randomize_batchnorm(net)
    x = torch.randn(2, 3, 8, 8)
    expected = net.eval()(x)
    assert freeze_batchnorm(net) is net
    assert isinstance(net[1][0], FrozenBatchNorm2d)
    torch.testing.assert_close(net(x), expected)
    assert isinstance(freeze_batchnorm(nn.BatchNorm2d(4)), FrozenBatchNorm2d)


@pytest.mark.parametrize(
    "cls, input_shape",
    [(ResNetC4, (2, 3, 32, 32)), (ResNetC5, (2, 3, 32, 32)), (ResNetRes5Head, (2, 256, 14, 14))],
)
def test_frozen_bn_replaces_every_batchnorm(cls, input_shape):
    model = cls(18)
    assert _no_batchnorm_left(model)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()(torch.randn(input_shape))
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f"{key} changed in a train-mode forward"


def test_norm_bn_freezes_only_the_frozen_stages():
    model = ResNetC4(18, trainable_stages=2, norm="bn")
    assert _no_batchnorm_left(model.stem) and _no_batchnorm_left(model.layer1)
    for layer in (model.layer2, model.layer3):
        assert any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in ResNetRes5Head(18, norm="bn").modules())


def _trainable(module):
    flags = {p.requires_grad for p in module.parameters()}
    assert len(flags) == 1, "a stage must be all trainable or all frozen"
    return flags.pop()


@pytest.mark.parametrize("cls, num_layers", [(ResNetC4, 3), (ResNetC5, 4)])
def test_resnet_trainable_stages_count_from_the_top(cls, num_layers):
    for trainable in (0, 2, num_layers + 1):
        model = cls(18, trainable_stages=trainable)
        stages = [model.stem] + [getattr(model, f"layer{i}") for i in range(1, num_layers + 1)]
        expected = [i >= len(stages) - trainable for i in range(len(stages))]
        assert [_trainable(stage) for stage in stages] == expected, trainable
    assert all(p.requires_grad for p in ResNetRes5Head(18).parameters())


def test_vgg_trainable_from():
    block_convs = [[0, 2], [5, 7], [10, 12, 14], [17, 19, 21], [24, 26, 28]]
    for trainable_from in range(1, 6):
        features = VGG16Conv5(trainable_from=trainable_from).features
        for block, convs in enumerate(block_convs, start=1):
            for index in convs:
                assert _trainable(features[index]) == (block >= trainable_from), (block, index)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ResNetC4(42), "depth must be one of .*got 42"),
        (lambda: ResNetC5(152), "got 152"),
        (lambda: ResNetRes5Head(19), "got 19"),
        (lambda: ResNetC4(18, trainable_stages=5), r"trainable_stages must be in 0\.\.4, got 5"),
        (lambda: ResNetC4(18, trainable_stages=-1), "got -1"),
        (lambda: ResNetC5(18, trainable_stages=6), r"0\.\.5, got 6"),
        (lambda: ResNetC4(18, norm="gn"), "norm must be one of .*'gn'"),
        (lambda: ResNetC5(18, width=20), "width must be a multiple of 8, at least 8, got 20"),
        (lambda: ResNetC5(18, weights_path="w.pth", width=32), "ImageNet weights are for width 64"),
        (lambda: ResNetC4(18, weights_path="w.pth", width=16), "width=16 trains from scratch"),
        (lambda: ResNetRes5Head(18, "w.pth", width=16), "ImageNet weights are for width 64"),
        (lambda: VGG16Conv5(trainable_from=0), r"trainable_from must be in 1\.\.5, got 0"),
        (lambda: VGG16Conv5(trainable_from=6), "got 6"),
    ],
)
def test_bad_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize("depth", [18, 50])
@torch.no_grad()
def test_scaled_resnet_at_width_64_is_torchvision_resnet(depth):
    """The width-scaled ResNet is built block by block; at width 64 it must be
    torchvision's network: same parameter names and shapes, and with the same
    weights the same output."""
    reference = getattr(torchvision.models, f"resnet{depth}")(weights=None).double().eval()
    blocks = {18: (resnet_module.BasicBlock, [2, 2, 2, 2]),
              50: (resnet_module.Bottleneck, [3, 4, 6, 3])}[depth]
    scaled = resnet_module._ScaledResNet(*blocks, 64).double().eval()
    ours, theirs = scaled.state_dict(), reference.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    scaled.load_state_dict(theirs)
    x = _image(torch.float64)
    layers = (*STEM, "layer1", "layer2", "layer3", "layer4")
    torch.testing.assert_close(_run(scaled, *layers, x=x), _run(reference, *layers, x=x))


def test_resnet_width_scales_every_stage():
    net = ResNetC5(18, norm="bn", trainable_stages=5, width=32)
    assert net.out_channels == 256
    assert net(_image())["res5"].shape == (1, 256, HEIGHT // 32, WIDTH // 32)
    assert [getattr(net, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [32, 64,
                                                                                      128, 256]


def test_c4_and_its_res5_head_at_a_smaller_width():
    """ResNet-18 C4 at width 16: stages 16, 32, 64 (res4 out), and the res5 head
    16 * 8 = 128 channels, taking the C4 map's 64."""
    trunk = ResNetC4(18, norm="bn", trainable_stages=4, width=16)
    head = ResNetRes5Head(18, norm="bn", width=16)
    assert (trunk.out_channels, head.out_channels) == (64, 128)
    res4 = trunk(_image())["res4"]
    assert res4.shape == (1, 64, HEIGHT // 16, WIDTH // 16)
    assert head(res4[:, :, :14, :14]).shape == (1, 128)


# ---- local weights --------------------------------------------------------------------------


def _run(net, *layers, x):
    for name in layers:
        x = getattr(net, name)(x)
    return x


STEM = ("conv1", "bn1", "relu", "maxpool")


@torch.no_grad()
def test_resnet_weights_reproduce_torchvision(resnet_file):
    depth, net, path = resnet_file
    x = _image(torch.float64)
    res4 = _run(net, *STEM, "layer1", "layer2", "layer3", x=x)

    c4 = ResNetC4(depth, weights_path=path).double().eval()
    torch.testing.assert_close(c4(x)["res4"], res4)
    c5 = ResNetC5(depth, weights_path=path).double().eval()
    torch.testing.assert_close(c5(x)["res5"], net.layer4(res4))

    rois = torch.randn(1, RES4_CHANNELS[depth], 14, 14, dtype=torch.float64)
    head = ResNetRes5Head(depth, weights_path=path).double().eval()
    res5 = net.layer4(rois)
    torch.testing.assert_close(head(rois, pool=False), res5)
    torch.testing.assert_close(head(rois), net.avgpool(res5).flatten(1))


@torch.no_grad()
def test_vgg_weights_reproduce_torchvision(vgg_file):
    # No BatchNorm here: the same float32 operators run on both sides.
    net, path = vgg_file
    x = _image()
    conv5 = VGG16Conv5(weights_path=path).eval()
    torch.testing.assert_close(conv5(x)["conv5"], net.features[:30](x))

    pooled = torch.randn(2, 512, 7, 7)
    head = VGG16BoxHead(weights_path=path).eval()
    torch.testing.assert_close(head(pooled), net.classifier[:5](pooled.flatten(1)))


def test_wrong_keys_are_named(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer2.0.conv1.renamed"] = state.pop("layer2.0.conv1.weight")
    path = tmp_path / "renamed.pt"
    torch.save(state, path)
    with pytest.raises(ValueError, match="missing 1 keys: layer2.0.conv1.weight") as error:
        ResNetC4(18, weights_path=path)
    assert "unexpected 1 keys: layer2.0.conv1.renamed" in str(error.value)
    assert str(path) in str(error.value)


def test_wrong_depth_is_named(tmp_path):
    path = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match=r"shape mismatch .*layer1\.0\.conv1\.weight"):
        ResNetC5(50, weights_path=path)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere" / "resnet50.pt"
    with pytest.raises(FileNotFoundError, match="nowhere/resnet50.pt"):
        ResNetC4(50, weights_path=path)


class NotWeights:
    """A pickled object that weights_only=True must refuse to rebuild."""

    def __init__(self):
        self.payload = [1, 2, 3]


def test_pickled_object_is_refused(tmp_path):
    path = tmp_path / "object.pt"
    torch.save({"conv1.weight": NotWeights()}, path)
    with pytest.raises(ValueError, match=r"not a plain state dict.*weights_only=True"):
        load_local_weights(nn.Conv2d(3, 64, 7), path)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(ValueError, match="must hold a state dict.*got list"):
        load_local_weights(nn.Conv2d(3, 64, 7), path)
