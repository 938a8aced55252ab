"""Image files read as people see them: a phone JPEG with EXIF orientation 6
is upright for training, evaluation and rcnn-predict, and the size check
compares against the upright size; grayscale, palette, RGBA and 16-bit files
read as 8-bit RGB."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import detector
from detector.data.coco import CocoInstances, detection_transforms
from detector.data.image_files import read_rgb
from detector.predict import predict

# the upright picture: 64 rows x 96 columns, dark, with a red box at x 50..80, y 10..30
HEIGHT, WIDTH = 64, 96
BOX = (50, 10, 80, 30)  # x1, y1, x2, y2
ORIENTATION = 0x0112


def _upright() -> np.ndarray:
    pixels = np.full((HEIGHT, WIDTH, 3), 20, np.uint8)
    x1, y1, x2, y2 = BOX
    pixels[y1:y2, x1:x2] = (230, 20, 20)
    return pixels


def _phone_jpeg(path):
    """What a phone writes: the sensor's pixels (the upright picture turned 90
    degrees anticlockwise, 96 rows x 64 columns) and EXIF orientation 6
    ("turn 90 degrees clockwise to show")."""
    stored = Image.fromarray(_upright()).transpose(Image.Transpose.ROTATE_90)
    assert stored.size == (HEIGHT, WIDTH)  # PIL sizes are (width, height)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    stored.save(path, quality=95, exif=exif)
    return path


def _assert_upright(image: torch.Tensor):
    """uint8 or [0, 1] [3, H, W]: the upright size, red inside the box, dark outside."""
    assert tuple(image.shape) == (3, HEIGHT, WIDTH)
    image = image.float() / (255 if not image.is_floating_point() else 1)
    x1, y1, x2, y2 = BOX
    inside = image[:, y1 + 2:y2 - 2, x1 + 2:x2 - 2].mean(dim=(1, 2))
    assert inside[0] > 0.8 and inside[1] < 0.2 and inside[2] < 0.2, inside
    outside = image[:, :, : x1 - 2].mean(dim=(1, 2))
    assert (outside < 0.15).all(), outside


def test_an_exif_orientation_is_applied(tmp_path):
    path = _phone_jpeg(tmp_path / "phone.jpg")
    with Image.open(path) as raw:  # the file really is stored sideways
        assert raw.size == (HEIGHT, WIDTH) and raw.getexif()[ORIENTATION] == 6
    _assert_upright(read_rgb(path))


def _coco(tmp_path):
    """A COCO json as an annotation tool writes it: the upright size and box."""
    images = tmp_path / "images"
    images.mkdir()
    _phone_jpeg(images / "phone.jpg")
    x1, y1, x2, y2 = BOX
    data = {"images": [{"id": 1, "file_name": "phone.jpg", "height": HEIGHT, "width": WIDTH}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                             "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]]}],
            "categories": [{"id": 1, "name": "box"}]}
    annotations = tmp_path / "ann.json"
    annotations.write_text(json.dumps(data))
    return images, annotations


@pytest.mark.parametrize("split", ["train", "val"])
def test_training_and_evaluation_read_the_upright_image(tmp_path, split):
    images, annotations = _coco(tmp_path)
    transforms = detection_transforms(train=True, flip_probability=0.0) if split == "train" else None
    dataset = CocoInstances(images, annotations, transforms=transforms)
    image, target = dataset[0]
    _assert_upright(image)
    assert target["boxes"].tolist() == [list(map(float, BOX))]
    x1, y1, x2, y2 = BOX
    assert target["masks"][0, y1:y2, x1:x2].all() and target["masks"].sum() == (x2 - x1) * (y2 - y1)


def test_the_size_check_compares_the_upright_size(tmp_path):
    images, annotations = _coco(tmp_path)
    data = json.loads(annotations.read_text())
    data["images"][0].update(height=WIDTH, width=HEIGHT)  # the stored (sideways) size
    annotations.write_text(json.dumps(data))
    dataset = CocoInstances(images, annotations)
    with pytest.raises(ValueError, match=f"phone.jpg is {HEIGHT}x{WIDTH} .* gives {WIDTH}x{HEIGHT} .*upright"):
        dataset[0]


def test_predict_sees_the_upright_image(trained, tmp_path):
    path = _phone_jpeg(tmp_path / "phone.jpg")
    model = detector.load(trained[0])
    seen = []
    original = model.predict
    model.predict = lambda images: seen.extend(images) or original(images)
    out = tmp_path / "out"
    results = predict(model, [path], out, batch_size=1, score_threshold=2.0)  # draws nothing
    (image,) = seen
    _assert_upright(image)
    with Image.open(out / "phone.png") as picture:
        _assert_upright(torch.from_numpy(np.array(picture.convert("RGB"))).permute(2, 0, 1))
    for entry in results:
        assert tuple(entry["segmentation"]["size"]) == (HEIGHT, WIDTH)


def test_every_mode_reads_as_8_bit_rgb(tmp_path):
    gray = np.arange(HEIGHT * WIDTH, dtype=np.uint32).reshape(HEIGHT, WIDTH) % 251
    Image.fromarray(gray.astype(np.uint8), "L").save(tmp_path / "gray.png")
    palette = Image.fromarray((gray % 4).astype(np.uint8), "P")
    colours = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    palette.putpalette([c for colour in colours for c in colour])
    palette.save(tmp_path / "palette.png")
    rgba = np.dstack([_upright(), np.full((HEIGHT, WIDTH), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    deep = (np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH) * 97 % 65536).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I;16")  # a real 16-bit file

    expected = {
        "gray.png": np.repeat(gray.astype(np.uint8)[..., None], 3, axis=2),
        "palette.png": np.array(colours, np.uint8)[gray % 4],
        "rgba.png": _upright(),
        "deep.png": np.repeat(np.round(deep / 257).astype(np.uint8)[..., None], 3, axis=2),
    }
    for name, pixels in expected.items():
        image = read_rgb(tmp_path / name)
        assert image.dtype == torch.uint8 and tuple(image.shape) == (3, HEIGHT, WIDTH), name
        assert torch.equal(image, torch.from_numpy(pixels).permute(2, 0, 1)), name


def test_an_unreadable_file_is_an_os_error(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(OSError):
        read_rgb(tmp_path / "broken.jpg")
