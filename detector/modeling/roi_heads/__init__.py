"""ROI heads: box and mask branches, each owning its loss and inference."""

from .box import BoxBranch, BoxPredictor, TwoMLPHead
from .mask import MaskBranch, MaskHead, MaskPredictor
from .roi_heads import ROIHeads

__all__ = ["BoxBranch", "BoxPredictor", "TwoMLPHead", "MaskBranch", "MaskHead", "MaskPredictor",
           "ROIHeads"]
