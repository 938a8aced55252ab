"""What a test leaves in its folder besides the metrics: the detections
file, the confusion matrix (JSON and PNG), the error breakdown, the
precision-recall curves and the gallery of the worst images; and the
sections of results.json and of the printed report that go with them.

Only the numbers can fail a test; a figure that cannot be drawn is a
warning (the run's results are written all the same)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pycocotools.coco import COCO

from .coco import Evaluation, segm_ground_truth
from .confusion import confusion_matrix
from .detections import write_detections, write_json
from .errors import error_breakdown, format_errors
from .per_class import format_per_class

log = logging.getLogger(__name__)

SCORE_THRESHOLD = 0.5  # the confusion matrix's and the gallery's
GALLERY_IMAGES = 6
WORST_LISTED = 20


def _figure(name: str, draw: Callable[[], Path | None], written: dict) -> None:
    try:
        path = draw()
    except Exception as error:  # noqa: BLE001 - a picture must not fail the run
        log.warning("could not draw %s: %s: %s", name, type(error).__name__, error)
    else:
        if path is not None:
            written[name] = path.name


def write_outputs(output_dir: str | os.PathLike, split: str, coco_gt: COCO,
                  evaluation: Evaluation, results: Sequence[dict],
                  image_ids: Sequence[int] | None,
                  read_image: Callable[[int], object] | None = None,
                  score_threshold: float = SCORE_THRESHOLD) -> dict:
    """Writes the files of a test of ``split`` into ``output_dir`` (names end
    in ``_<split>``) and returns results.json's sections: "per_class",
    "errors" (per iou type, see detector.evaluation.errors), "confusion" (the
    file's name and thresholds) and "files" (every file written)."""
    from .figures import plot_confusion, plot_errors, plot_pr_curves
    from .gallery import draw_gallery

    output_dir = Path(output_dir)
    files = {"detections": write_detections(output_dir, split, results).name}
    errors = {t: error_breakdown(segm_ground_truth(coco_gt) if t == "segm" else coco_gt,
                                 results, t, image_ids) for t in evaluation.metrics}
    confusion = confusion_matrix(coco_gt, results, image_ids, score_threshold)
    per_image = confusion.pop("per_image")
    worst = sorted(per_image.items(), key=lambda item: (-item[1]["errors"], item[0]))
    confusion["worst_images"] = [{"image_id": int(i), **v} for i, v in worst[:WORST_LISTED]
                                 if v["errors"]]
    files["confusion"] = write_json(output_dir / f"confusion_{split}.json", confusion).name
    names = {c: str(v.get("name", c)) for c, v in coco_gt.cats.items()}
    _figure("confusion_png", lambda: plot_confusion(
        confusion, output_dir / f"confusion_{split}.png"), files)
    _figure("pr_curves", lambda: plot_pr_curves(
        evaluation.curves, names, output_dir / f"pr_curves_{split}.png"), files)
    _figure("errors", lambda: plot_errors(errors, output_dir / f"errors_{split}.png"), files)
    if read_image is not None:
        _figure("gallery", lambda: draw_gallery(
            coco_gt, results, {**confusion, "per_image": per_image}, read_image,
            output_dir / f"gallery_{split}.png", GALLERY_IMAGES), files)
    return {"per_class": evaluation.per_class, "errors": errors,
            "confusion": {"file": files["confusion"], "score_threshold": score_threshold,
                          "iou_threshold": confusion["iou_threshold"]},
            "files": files}


def report_text(sections: Mapping) -> str:
    """The per-class tables and the error breakdown, as printed after the
    summary table."""
    parts = [format_per_class(sections["per_class"])]
    if sections.get("errors"):
        parts.append(format_errors(sections["errors"]))
    files = sections.get("files")
    if files:
        parts.append("Written: " + ", ".join(files.values()))
    return "\n\n".join(parts)
