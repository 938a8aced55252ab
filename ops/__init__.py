"""The project's ROI operators: roi_pool, roi_warp and roi_align.

Kernels in C++ (CPU, all cores) and CUDA, registered as real PyTorch operators
under ``torch.ops.roi_ops`` (with ``nms``, the detector's non-maximum suppression); ``ops.reference`` holds a pure-PyTorch definition
of each. Importing ``ops`` compiles nothing: the kernels are compiled for this
machine on first use (once, about 30 s; then cached and loaded in
milliseconds). ``ops.load()`` does it up front, e.g. before using
``torch.ops.roi_ops`` directly or loading an exported program.
"""

from ._build import BuildError
from ._library import has_cuda_kernels
from ._library import kernels as _kernels
from .nms import nms
from .roi_align import RoIAlign, roi_align
from .roi_pool import RoIPool, roi_pool
from .roi_warp import RoIWarp, roi_warp


def load() -> None:
    """Loads the kernels (compiling them first on a machine that has no build
    of these sources) and registers the operators under torch.ops.roi_ops.
    Raises ops.BuildError, saying what is missing, when they cannot be built."""
    _kernels()


__all__ = ["BuildError", "RoIAlign", "RoIPool", "RoIWarp", "has_cuda_kernels", "load", "nms",
           "roi_align", "roi_pool", "roi_warp"]
