"""Faster R-CNN / Mask R-CNN models, data, training and evaluation (built on ops)."""
