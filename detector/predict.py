"""Run a detector on your images (the command: ``rcnn-predict``, detector/cli/predict.py).

    rcnn-predict ckpt_path=outputs/RUN/checkpoints/best-epoch011.ckpt input=photos/ output=out/
    rcnn-predict torchvision=maskrcnn_resnet50_fpn weights=maskrcnn.pth \\
        input="photos/*.jpg" output=out/

For each image it writes ``<name>.png`` with the boxes, class names, scores and masks drawn,
and one ``predictions.json`` (COCO results, plus each entry's file name and class name) for all
images. An image that cannot be read is reported by name and the others are still processed.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image
from tqdm import tqdm

from .data.image_files import read_rgb
from .visualization.drawing import draw
from .evaluation import to_coco_results
from .export import ExportedDetector
from .loading.checkpoint import load
from .modeling.rcnn import GeneralizedRCNN
from .loading.torchvision_compat import from_torchvision
from .weights.files import read_state_dict

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def find_images(input: str | os.PathLike) -> list[Path]:
    """An image file, the images of a folder (sorted), or the files a glob matches."""
    path = Path(input)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    else:
        found = sorted(Path(p) for p in glob.glob(str(input), recursive=True)
                       if Path(p).is_file())
    if not found:
        raise FileNotFoundError(f"input={input}: no image file, folder of images or glob "
                                "matching any file")
    return found


def load_model(ckpt_path: str | None = None, torchvision: str | None = None,
               weights: str | None = None, min_size: int | Sequence[int] | None = None,
               max_size: int | None = None, inference: dict | None = None) -> GeneralizedRCNN:
    """A project checkpoint (``ckpt_path``), or torchvision weights (``torchvision``
    = the architecture name, ``weights`` = the local file), in eval mode, with
    the preprocessing and inference settings it was made with, except those
    given here (``min_size`` / ``max_size``: the resize; ``inference``: see
    GeneralizedRCNN.configure_inference)."""
    model = _load_model(ckpt_path, torchvision, weights)
    if min_size is not None or max_size is not None:
        transform = model.transform
        model.transform = transform.with_sizes(
            transform.min_sizes if min_size is None else min_size,
            transform.max_size if max_size is None else max_size)
    return model.configure_inference(**(inference or {}))  # None keeps a setting


def _load_model(ckpt_path: str | None, torchvision: str | None,
                weights: str | None) -> GeneralizedRCNN:
    if (ckpt_path is None) == (torchvision is None):
        raise ValueError("give either ckpt_path=PATH (a checkpoint of this project) or "
                         "torchvision=NAME weights=PATH (torchvision weights)")
    if ckpt_path is not None:
        return load(ckpt_path)
    if weights is None:
        raise ValueError(f"torchvision={torchvision} needs weights=PATH, a local weights file "
                         "(nothing is downloaded)")
    state = read_state_dict(weights, f"{torchvision} weights file (weights=)")
    return from_torchvision(torchvision, state).eval()


def _batches(paths: Sequence[Path], size: int) -> Iterator[list[tuple[int, Path, torch.Tensor]]]:
    """(index in paths, path, uint8 image) in batches; unreadable images are
    logged by name and left out."""
    batch = []
    for index, path in enumerate(paths):
        try:
            batch.append((index, path, read_rgb(path)))
        except (RuntimeError, OSError, ValueError) as error:
            log.error("cannot read image %s (%s); skipped", path, error)
            continue
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def predict(model: GeneralizedRCNN | ExportedDetector, paths: Sequence[Path], output: str | os.PathLike,
            batch_size: int = 2, device: str = "auto", score_threshold: float = 0.5) -> list:
    """Runs ``model`` (a detector, or an exported one) on ``paths`` in batches; writes the pictures and
    predictions.json into ``output``; returns the COCO results. An entry's
    ``image_id`` is the image's index in ``paths``; ``category_id`` is the
    training data's category id of the label (the model's ``category_ids``;
    for torchvision's COCO models, whose labels are COCO's ids, the label)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model = model.to(device).eval()
    names = getattr(model, "class_names", None)
    ids = getattr(model, "category_ids", None)
    results = []
    # a live bar on a terminal only: in a file it would be a carriage-return stream
    with tqdm(total=len(paths), desc="predict", unit="image",
              disable=not sys.stderr.isatty()) as progress:
        for batch in _batches(paths, batch_size):
            images = [image.to(device, torch.float32) / 255 for _, _, image in batch]
            with torch.no_grad():
                detections = model.predict(images)
            for (image_id, path, image), det in zip(batch, detections):
                picture = draw(image, det, names, score_threshold, model.mask_threshold)
                Image.fromarray(picture.permute(1, 2, 0).cpu().numpy()).save(
                    output / f"{path.stem}.png")
                labels = det["labels"].tolist()
                to_category = {label: ids[label - 1] if ids else label for label in labels}
                entries = to_coco_results([det], [image_id], to_category,  # one per detection
                                          model.mask_threshold)
                for entry, label in zip(entries, labels):
                    entry["file_name"] = path.name
                    if names:
                        entry["category_name"] = names[label]
                    results.append(entry)
            progress.update(len(batch))
    partial = output / "predictions.json.partial"
    partial.write_text(json.dumps(results))
    os.replace(partial, output / "predictions.json")
    return results
