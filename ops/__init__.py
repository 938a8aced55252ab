"""The project's ROI operators: roi_pool, roi_warp and roi_align.

Kernels in C++ (CPU, all cores) and CUDA, registered as real PyTorch operators
under ``torch.ops.roi_ops``; ``ops.reference`` holds a pure-PyTorch definition
of each. The kernels are compiled on first import and cached.
"""

from .roi_align import RoIAlign, roi_align
from .roi_pool import RoIPool, roi_pool
from .roi_warp import RoIWarp, roi_warp

__all__ = ["roi_align", "roi_pool", "roi_warp", "RoIAlign", "RoIPool", "RoIWarp"]
