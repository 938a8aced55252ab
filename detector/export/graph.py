"""The detector as one traceable graph: an image of any size in, the
detections in its own pixels out, traced by torch.export with a dynamic height
and width and data-dependent detection counts."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..modeling.rcnn import GeneralizedRCNN

# The image sizes an exported program takes (either side, in pixels).
MIN_SIDE, MAX_SIDE = 16, 8192
# After the model's resize, both sides must exceed the coarsest stride the
# convolutions see (32), so that no feature map has a side of one cell: torch
# chooses convolution kernels by shape while tracing and assumes none has.
MIN_RESIZED_SIDE = 33
OUTPUTS = ("boxes", "scores", "labels", "masks")


class InferenceGraph(nn.Module):
    """``model([image])[0]`` as a tuple: image [3, H, W] float in [0, 1] →
    boxes [N, 4] (x1, y1, x2, y2 in the image's pixels), scores [N],
    labels [N] int64 and, for Mask R-CNN, masks [N, 1, H, W] probabilities."""

    def __init__(self, model: GeneralizedRCNN):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        detections = self.model([image])[0]
        return tuple(detections[name] for name in self.output_names())

    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS if self.model.roi_heads.has_masks else OUTPUTS[:3]


def example_image(model: GeneralizedRCNN) -> Tensor:
    """A 3:4 image at the model's resize size (the values do not matter:
    nothing in the traced graph branches on them)."""
    side = model.transform.min_size or 480
    return torch.rand(3, side, side * 4 // 3, generator=torch.Generator().manual_seed(0))


def trace(model: GeneralizedRCNN) -> torch.export.ExportedProgram:
    """The eval-mode model as an ExportedProgram taking one image of any size
    from MIN_SIDE to MAX_SIDE per side. Detections come out as eager
    inference gives them (tests/test_export.py)."""
    if model.training:
        raise ValueError("export: the model must be in eval mode (model.eval())")
    side = {1: torch.export.Dim("height", min=MIN_SIDE, max=MAX_SIDE),
            2: torch.export.Dim("width", min=MIN_SIDE, max=MAX_SIDE)}
    # size-oblivious: no assumption that a traced size is, or is not, 1
    with torch.fx.experimental._config.patch(backed_size_oblivious=True), torch.no_grad():
        return torch.export.export(InferenceGraph(model), (example_image(model),),
                                   dynamic_shapes={"image": side}, strict=False)


def metadata(model: GeneralizedRCNN) -> dict:
    """What running the exported program needs besides the graph: the class
    names and category ids of the labels, the mask threshold, the resize (to
    check an image's size first) and the settings the graph was traced with."""
    transform = model.transform
    return {"format_version": 1, "class_names": model.class_names,
            "category_ids": model.category_ids, "mask_threshold": model.mask_threshold,
            "min_size": transform.min_size,
            "max_size": transform.max_size, "inference": model.inference_settings(),
            "outputs": list(InferenceGraph(model).output_names())}
