"""ONNX translations of the ROI operators and nms, for the dynamo exporter::

    torch.onnx.export(model, args, dynamo=True,
                      custom_translation_table=ops.onnx.translation_table())

What each op becomes (opset 18; the float, int and bool arguments reach the
translations as Python values, so they become attributes or constants):

- roi_align, mode="avg": ``RoiAlign`` with coordinate_transformation_mode
  "half_pixel" (aligned=True) or "output_half_pixel" (aligned=False, boxes at
  least one cell); sampling_ratio <= 0 becomes 0, ONNX's adaptive ratio.
- roi_warp, mode="avg": the scaled corners rounded half away from zero (ONNX
  ``Round`` rounds halves to even, so it is composed from Floor), then
  ``RoiAlign`` at spatial_scale 1 with "output_half_pixel".
- roi_pool: ``MaxRoiPool``, whose corner rounding, floor/ceil bin edges and
  zero for bins off the map are those of ops.roi_pool. The argmax output only
  serves the backward pass; the graph gives -1 everywhere (and the exporter
  drops it, since ops.roi_pool does not return it).
- nms: ``NonMaxSuppression`` (one batch, one class, no score threshold).
- mode="max" of roi_align and roi_warp: a composition of standard ops
  (``_bilinear_max``), because RoiAlign's "max" is another operator. ONNX's
  reference implementation and onnxruntime take, for each sample, the largest
  of its four weighted corner terms w_i * v_i instead of the interpolated value
  sum_i w_i * v_i, then the max of those over the bin. On N(0, 1) maps and
  random boxes that is off from ops.roi_align by up to 2.2-3.1, for every
  aligned/sampling_ratio setting (avg mode agrees exactly).

The composition keeps no per-box copy of the feature map: the map is
flattened to [N*H*W, C], every sample point of every bin of every box is laid
out in one ragged list (so adaptive sampling ratios, which differ from box to
box, need no padding), each reads its four cells with Gather, and
ScatterElements with reduction="max" folds the samples into their bins. Its
memory is O(samples x C), where the kernels stream. (ScatterND would need no
[samples, C] index tensor, but onnxruntime's CPU kernel splits its index list
across threads with no care for repeated indices: on a many-core machine two
threads folding into one bin lose updates, a wrong max now and then.)

float16 and bfloat16 maps are pooled in float32 with float32 boxes, as the
kernels pool them, and the result cast back: RoiAlign and MaxRoiPool take no
bfloat16, and in float16 they would round box coordinates and sums to half
precision.
"""

from __future__ import annotations

import functools

from onnxscript import ir
from onnxscript import opset18 as op

from ._library import kernels

_LOW_PRECISION = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


def _check_sizes(name: str, pooled_height, pooled_width) -> None:
    # Python ints, unless torch.ops.roi_ops was called with sizes derived from
    # dynamic shapes (the public ops only take ints).
    if not (isinstance(pooled_height, int) and isinstance(pooled_width, int)):
        raise ValueError(
            f"{name} with an output size (pooled_height, pooled_width) computed from dynamic "
            "shapes cannot be exported to ONNX: the translation needs it fixed (an attribute "
            "of RoiAlign and MaxRoiPool); pass the output size as integers")


def _in_float32(fn):
    """Runs fn on a float32 copy of a float16/bfloat16 map and casts the result back."""
    @functools.wraps(fn)
    def wrapped(input, rois, *args):
        dtype = input.dtype
        if dtype in _LOW_PRECISION:
            out = fn(op.Cast(input, to=ir.DataType.FLOAT), rois, *args)
            return op.Cast(out, to=dtype)
        return fn(input, rois, *args)
    return wrapped


def _round_half_away(v):
    """C's round(): halves away from zero, where ONNX Round rounds them to even."""
    magnitude = op.Abs(v)
    whole = op.Floor(magnitude)
    up = op.CastLike(op.GreaterOrEqual(op.Sub(magnitude, whole), 0.5), v)
    return op.Mul(op.Sign(v), op.Add(whole, up))


def _ints(*values: int):
    return op.Constant(value_ints=list(values))


def _column(t, i: int):
    return op.Gather(t, op.Constant(value_int=i), axis=1)


def _batch_and_corners(rois, input, spatial_scale: float | None = None, quantize=False):
    """rois [K, 5] as int64 batch indices [K] and corners [K, 4] in input's dtype,
    scaled (and rounded) when spatial_scale is given."""
    rois = op.CastLike(rois, input)
    batch = op.Cast(_column(rois, 0), to=ir.DataType.INT64)
    corners = op.Slice(rois, [1], [5], [1])
    if spatial_scale is not None:
        corners = op.Mul(corners, spatial_scale)
    return batch, (_round_half_away(corners) if quantize else corners)


def _roi_align_onnx(input, corners, batch, spatial_scale, pooled_height, pooled_width,
                    sampling_ratio, aligned):
    return op.RoiAlign(
        input, corners, batch, spatial_scale=spatial_scale, output_height=pooled_height,
        output_width=pooled_width, sampling_ratio=max(sampling_ratio, 0), mode="avg",
        coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel")


def _axis(coords, size):
    """The two cells each sample coordinate reads along one axis and their
    weights, by ops.reference's border rules: zero weights further than one
    cell outside, clamped onto the border within one cell."""
    size_f = op.CastLike(size, coords)
    valid = op.And(op.GreaterOrEqual(coords, -1.0), op.LessOrEqual(coords, size_f))
    v = op.Where(valid, op.Max(coords, 0.0), 0.0)  # also keeps NaN out of the indices
    low = op.Cast(op.Floor(v), to=ir.DataType.INT64)
    last = op.Sub(size, 1)
    at_edge = op.GreaterOrEqual(low, last)
    low = op.Where(at_edge, last, low)
    high = op.Where(at_edge, low, op.Add(low, 1))
    w_high = op.Where(valid, op.Sub(op.Where(at_edge, op.CastLike(low, v), v),
                                    op.CastLike(low, v)), 0.0)
    w_low = op.Where(valid, op.Sub(1.0, w_high), 0.0)
    return low, high, op.Unsqueeze(w_low, [1]), op.Unsqueeze(w_high, [1])


def _bilinear_max(input, batch, corners, pooled_height: int, pooled_width: int,
                  sampling_ratio: int, aligned: bool):
    """Max over each bin's bilinear samples, as the kernels compute it, from standard ops."""
    shape = op.Shape(input)
    channels, height, width = (op.Slice(shape, [i], [i + 1]) for i in (1, 2, 3))
    nhwc = op.Transpose(input, perm=[0, 2, 3, 1])
    flat = op.Reshape(nhwc, op.Concat(_ints(-1), channels, axis=0))  # [N*H*W, C]

    # Per box [K]: where it starts, its bin size and its samples per bin.
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (_column(corners, i) for i in range(4))
    start_w, start_h = op.Sub(x1, offset), op.Sub(y1, offset)
    roi_w, roi_h = op.Sub(op.Sub(x2, offset), start_w), op.Sub(op.Sub(y2, offset), start_h)
    if not aligned:
        roi_w, roi_h = op.Max(roi_w, 1.0), op.Max(roi_h, 1.0)
    bin_h, bin_w = op.Div(roi_h, float(pooled_height)), op.Div(roi_w, float(pooled_width))
    if sampling_ratio > 0:
        grid_h = grid_w = op.Expand(op.Constant(value_int=sampling_ratio), op.Shape(batch))
    else:  # adaptive: ceil(box size / output size); none for an empty or inverted box
        grid_h = op.Max(op.Cast(op.Ceil(bin_h), to=ir.DataType.INT64), 0)
        grid_w = op.Max(op.Cast(op.Ceil(bin_w), to=ir.DataType.INT64), 0)
    per_bin = op.Mul(grid_h, grid_w)
    counts = op.Mul(per_bin, pooled_height * pooled_width)

    # The ragged list of samples, box after box: box k holds [start_k, end_k),
    # so a sample's box is the number of boxes after the first that start at
    # or before it (a running sum of marks put at those starts).
    ends = op.CumSum(counts, 0)
    starts = op.Sub(ends, counts)
    total = op.ReduceSum(counts, keepdims=1)
    later_starts = op.Slice(ends, [0], [-1])
    marks = op.ScatterElements(
        op.Expand(op.Constant(value_int=0), op.Add(total, 1)), later_starts,
        op.Expand(op.Constant(value_int=1), op.Shape(later_starts)), reduction="add")
    box = op.Slice(op.CumSum(marks, 0), [0], total)

    def at_sample(per_box):
        return op.Gather(per_box, box)

    local = op.Sub(op.Range(0, op.Squeeze(total, [0]), 1), at_sample(starts))
    grid_h_s, grid_w_s, per_bin_s = at_sample(grid_h), at_sample(grid_w), at_sample(per_bin)
    bin_s = op.Div(local, per_bin_s)  # bin index within the box, row-major
    within = op.Mod(local, per_bin_s)
    iy, ix = op.Div(within, grid_w_s), op.Mod(within, grid_w_s)
    ph, pw = op.Div(bin_s, pooled_width), op.Mod(bin_s, pooled_width)

    def coords(start, size, p, i, grid):
        # start + p * size + (i + 0.5) * size / grid, in the kernels' order
        size = at_sample(size)
        p, i, grid = (op.CastLike(t, size) for t in (p, i, grid))
        return op.Add(op.Add(at_sample(start), op.Mul(p, size)),
                      op.Div(op.Mul(op.Add(i, 0.5), size), grid))

    y_low, y_high, wy_low, wy_high = _axis(coords(start_h, bin_h, ph, iy, grid_h_s), height)
    x_low, x_high, wx_low, wx_high = _axis(coords(start_w, bin_w, pw, ix, grid_w_s), width)
    row = op.Mul(at_sample(batch), height)

    def read(y, x):
        return op.Gather(flat, op.Add(op.Mul(op.Add(row, y), width), x), axis=0)

    values = op.Add(
        op.Add(op.Mul(op.Mul(wy_low, wx_low), read(y_low, x_low)),
               op.Mul(op.Mul(wy_low, wx_high), read(y_low, x_high))),
        op.Add(op.Mul(op.Mul(wy_high, wx_low), read(y_high, x_low)),
               op.Mul(op.Mul(wy_high, wx_high), read(y_high, x_high))))

    # Fold the samples into their bins (not ScatterND: see the module's
    # docstring); a box without samples gives 0.
    bins = pooled_height * pooled_width
    target = op.Expand(op.Unsqueeze(op.Add(op.Mul(box, bins), bin_s), [1]), op.Shape(values))
    lowest = op.CastLike(float("-inf"), input)
    init = op.Expand(lowest, op.Concat(op.Mul(op.Shape(batch), bins), channels, axis=0))
    pooled = op.ScatterElements(init, target, values, axis=0, reduction="max")
    bins_shape = op.Concat(_ints(-1, pooled_height, pooled_width), channels, axis=0)
    pooled = op.Reshape(pooled, bins_shape)
    has_samples = op.Reshape(op.Greater(counts, 0), [-1, 1, 1, 1])
    pooled = op.Where(has_samples, pooled, op.CastLike(0.0, input))
    return op.Transpose(pooled, perm=[0, 3, 1, 2])


@_in_float32
def _roi_align(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int,
               sampling_ratio: int, aligned: bool, max_mode: bool):
    _check_sizes("roi_align", pooled_height, pooled_width)
    if max_mode:
        batch, corners = _batch_and_corners(rois, input, spatial_scale)
        return _bilinear_max(input, batch, corners, pooled_height, pooled_width,
                             sampling_ratio, aligned)
    batch, corners = _batch_and_corners(rois, input)
    return _roi_align_onnx(input, corners, batch, spatial_scale, pooled_height, pooled_width,
                           sampling_ratio, aligned)


@_in_float32
def _roi_warp(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int,
              sampling_ratio: int, max_mode: bool):
    _check_sizes("roi_warp", pooled_height, pooled_width)
    batch, corners = _batch_and_corners(rois, input, spatial_scale, quantize=True)
    if max_mode:
        return _bilinear_max(input, batch, corners, pooled_height, pooled_width,
                             sampling_ratio, aligned=False)
    return _roi_align_onnx(input, corners, batch, 1.0, pooled_height, pooled_width,
                           sampling_ratio, aligned=False)


def _roi_pool(input, rois, spatial_scale: float, pooled_height: int, pooled_width: int):
    _check_sizes("roi_pool", pooled_height, pooled_width)
    dtype = input.dtype
    if dtype in _LOW_PRECISION:
        input = op.Cast(input, to=ir.DataType.FLOAT)
    output = op.MaxRoiPool(input, op.CastLike(rois, input),
                           pooled_shape=[pooled_height, pooled_width],
                           spatial_scale=spatial_scale)
    argmax = op.Expand(op.Constant(value_int=-1), op.Shape(output))
    if dtype in _LOW_PRECISION:
        output = op.Cast(output, to=dtype)
    return output, op.Cast(argmax, to=ir.DataType.INT32)


def _nms(boxes, scores, iou_threshold: float):
    """``NonMaxSuppression`` over one batch and one class, every box allowed to
    stay; its rule is torchvision's (drop above the IoU threshold) and it
    returns the kept boxes by decreasing score."""
    count = op.Shape(boxes, start=0, end=1)
    selected = op.NonMaxSuppression(op.Unsqueeze(op.Cast(boxes, to=ir.DataType.FLOAT), [0]),
                                    op.Unsqueeze(op.Cast(scores, to=ir.DataType.FLOAT), [0, 1]),
                                    count, op.Constant(value_floats=[iou_threshold]))
    return op.Reshape(op.Slice(selected, [2], [3], [1]), [-1])


def translation_table() -> dict:
    """custom_translation_table for torch.onnx.export(dynamo=True); loads the kernels."""
    roi_ops = kernels()
    return {
        roi_ops.roi_align.default: _roi_align,
        roi_ops.roi_warp.default: _roi_warp,
        roi_ops.roi_pool.default: _roi_pool,
        roi_ops.nms.default: _nms,
    }
