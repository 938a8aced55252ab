"""The model's edge: float64 images are converted (the same detections as
float32), and what would fail deep inside or give junk is refused naming the
image: integer images, values outside [0, 1] (a 0..255 float image, an
already normalized one), non-finite values, an empty image."""

import pytest
import torch

from detector.loading.spec import build_model

from conftest import SPEC


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = build_model({**SPEC, "num_classes": 3}).eval()
    net.configure_inference(score_thresh=0.0)
    return net


def _image(seed=0, size=(64, 80)):
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed))


def test_float64_images_give_the_float32_detections(model):
    image = _image()
    (ours,) = model.predict([image.double()])
    (reference,) = model.predict([image])
    assert ours["boxes"].dtype == torch.float32 and len(reference["boxes"]) > 0
    for key in ("boxes", "scores", "labels", "masks"):
        torch.testing.assert_close(ours[key], reference[key], rtol=1e-4, atol=1e-4)


def test_float64_images_train(model):
    target = {"boxes": torch.tensor([[10.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([1]),
              "masks": torch.zeros(1, 64, 80, dtype=torch.uint8)}
    target["masks"][0, 8:30, 10:40] = 1
    try:
        losses = model.train()([_image().double()], [target])
    finally:
        model.eval()
    assert losses and all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("bad, error, message", [
    (lambda: (_image() * 255).round(), ValueError,
     r"images\[1\] has values up to 2\d\d.*\[0, 1\].*divide a 0\.\.255 image by 255"),
    (lambda: (_image() * 255).to(torch.uint8), TypeError,
     r"images\[1\] must be a float tensor in \[0, 1\], got torch.uint8.*image.float\(\) / 255"),
    (lambda: (_image() - 0.45) / 0.225, ValueError,
     r"images\[1\] has values down to -\d.*normalizes them itself"),
    (lambda: _image().index_fill(1, torch.tensor([3]), float("nan")), ValueError,
     r"images\[1\] has non-finite values"),
    (lambda: torch.zeros(3, 0, 40), ValueError, r"images\[1\] is empty: 0x40 \(h x w\)"),
    (lambda: torch.zeros(3, 40, 0), ValueError, r"images\[1\] is empty: 40x0 \(h x w\)"),
])
def test_bad_images_are_named_by_index(model, bad, error, message):
    with pytest.raises(error, match=message):
        model.predict([_image(1), bad()])


def test_a_slight_resampling_overshoot_is_accepted(model):
    image = _image()
    image[0, 0, 0], image[1, 0, 0] = 1.005, -0.005  # as bicubic resampling leaves them
    assert len(model.predict([image])) == 1
