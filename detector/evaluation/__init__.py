"""Evaluation of detections: COCO's metrics overall and per class (coco,
per_class), Pascal VOC's (voc), the confusion matrix (confusion), where the AP
goes (errors), the detections file (detections), and what a test writes into
its folder (outputs; figures drawn by figures and gallery)."""

from .coco import (
    ALL_METRICS,
    BACKENDS,
    EXTRA_METRICS,
    METRICS,
    evaluate,
    evaluate_per_class,
    format_table,
    to_coco_results,
)
from .per_class import AR_METRICS, CLASS_METRICS, format_per_class

__all__ = ["ALL_METRICS", "AR_METRICS", "BACKENDS", "CLASS_METRICS", "EXTRA_METRICS", "METRICS",
           "evaluate", "evaluate_per_class", "format_per_class", "format_table",
           "to_coco_results"]
