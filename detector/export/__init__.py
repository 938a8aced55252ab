"""Exporting a detector for deployment and running the exported model.

    from detector.export import export, ExportedDetector
    export(model, "model.onnx")                # or "model.pt2" (torch.export)
    detections = ExportedDetector("model.onnx").predict([image])

The graph takes one image [3, H, W] (float, in [0, 1], any size within
graph.MIN_SIDE..MAX_SIDE) and does everything the eager model does: resize,
normalization, RPN, ROI heads, NMS, mapping back and mask pasting. A .pt2
reloads in a process that imports only ``ops`` (ops.load(), then
torch.export.load); an .onnx runs in onnxruntime (ops.onnx translates the
project's operators to standard ONNX ones).
"""

from .formats import FORMATS, export
from .graph import InferenceGraph, trace
from .runtime import ExportedDetector

__all__ = ["FORMATS", "ExportedDetector", "InferenceGraph", "export", "trace"]
