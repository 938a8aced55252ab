"""The detector as plain ``nn.Module``s: the meta-architecture (rcnn), its
builders, the image transform, the RPN (rpn, anchors), the ROI heads and their
poolers, the shared primitives (boxes, matching), BatchNorm folding (fuse),
freezing parts (parts), the input checks (checks), and the backbones. Nothing
here imports Lightning, Hydra or a command; anyone can build a model by hand."""
