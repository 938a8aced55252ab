"""Running an exported detector (.pt2 through torch.export, .onnx through
onnxruntime) with GeneralizedRCNN's prediction interface, so that
detector.predict.predict and rcnn-predict take either."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor

from ..modeling.transform import ImageTransform
from .formats import METADATA_KEY
from .graph import MAX_SIDE, MIN_RESIZED_SIDE, MIN_SIDE


class ExportedDetector:
    """An exported detector. ``predict(images)`` returns what
    GeneralizedRCNN.predict returns: per image a dict of boxes, scores, labels
    (and masks, probabilities), in the image's own pixels; ``class_names``,
    ``category_ids`` and ``mask_threshold`` are those of the exported model.
    Images run one at a time (the graph takes one image of any size)."""

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"exported={self.path}: no such file")
        self.format = self.path.suffix.lstrip(".")
        if self.format == "pt2":
            self._run, info = _load_pt2(self.path)
        elif self.format == "onnx":
            self._run, info = _load_onnx(self.path, num_threads)
        else:
            raise ValueError(f"exported={self.path}: an exported model ends in .pt2 or .onnx")
        self.metadata = info
        self.class_names = info["class_names"]
        self.category_ids = info["category_ids"]
        self.mask_threshold = info["mask_threshold"]
        self.outputs = info["outputs"]
        self._transform = ImageTransform(info["min_size"], info["max_size"])

    def to(self, device: str | torch.device) -> ExportedDetector:
        if torch.device(device).type != "cpu":
            raise ValueError(f"exported={self.path}: exported models run on the CPU here "
                             f"(device={device})")
        return self

    def eval(self) -> ExportedDetector:
        return self

    def predict(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        results = []
        for image in images:
            self._check(image)
            values = self._run(image.float().contiguous())
            results.append(dict(zip(self.outputs, values)))
        return results

    def _check(self, image: Tensor) -> None:
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"exported={self.path}: images must be [3, H, W], got shape "
                             f"{tuple(image.shape)}")
        height, width = image.shape[-2:]
        if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
            raise ValueError(f"exported={self.path}: an image of {height}x{width} is outside "
                             f"the exported sizes ({MIN_SIDE} to {MAX_SIDE} pixels a side)")
        scale = self._transform.scale_for((height, width))  # as the graph's resize
        resized = int(height * scale), int(width * scale)
        if min(resized) < MIN_RESIZED_SIDE:
            raise ValueError(
                f"exported={self.path}: an image of {height}x{width} is resized to "
                f"{resized[0]}x{resized[1]}; exported models need both sides resized to at "
                f"least {MIN_RESIZED_SIDE} pixels (an aspect ratio this far from square is "
                "not supported; crop the image or run the checkpoint instead)")


def _load_pt2(path: Path):
    import ops

    ops.load()  # the program's operators, registered before it is read
    extra = {METADATA_KEY: ""}
    program = torch.export.load(path, extra_files=extra)
    module = program.module()

    def run(image: Tensor) -> list[Tensor]:
        with torch.no_grad():
            return list(module(image))
    return run, json.loads(extra[METADATA_KEY])


def _load_onnx(path: Path, num_threads: int | None):
    try:
        import onnxruntime
    except ImportError as error:
        raise RuntimeError(f"exported={path}: running an .onnx model needs onnxruntime: pip "
                           "install 'roi-rcnn[export]'") from error
    options = onnxruntime.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    info = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    if info is None:
        raise ValueError(f"exported={path}: not an ONNX model written by rcnn-export (it has no "
                         f"{METADATA_KEY} metadata)")

    def run(image: Tensor) -> list[Tensor]:
        return [torch.from_numpy(v) for v in session.run(None, {"image": image.numpy()})]
    return run, json.loads(info)
