"""Files a test writes, each whole or not at all (written beside, then moved
into place): the detections in COCO's results format, which pycocotools'
``loadRes`` and any other COCO tool read, and JSON documents."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def write_json(path: str | os.PathLike, value, indent: int | None = 2) -> Path:
    """``value`` as JSON at ``path``, atomically (``PATH.partial`` then
    os.replace): a reader sees the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value, indent=indent))
    os.replace(partial, path)
    return path


def write_detections(output_dir: str | os.PathLike, split: str,
                     results: Sequence[dict]) -> Path:
    """``output_dir/detections_<split>.json``: the list of COCO result entries
    (image_id, category_id, bbox [x, y, w, h], score, and segmentation as RLE
    for masks), in the annotation file's frame and category ids."""
    if not split or "/" in split or split.startswith("."):
        raise ValueError(f"split must be a plain name such as 'test', got {split!r}")
    return write_json(Path(output_dir) / f"detections_{split}.json", list(results), indent=None)
