"""Bad input gets a clear error naming the argument; edge cases behave."""

import math

import pytest
import torch

import ops
from roi_cases import feature_map

OPS = [ops.roi_align, ops.roi_warp, ops.roi_pool]
IDS = ["roi_align", "roi_warp", "roi_pool"]


def _x():
    return feature_map(batch=2, channels=3, height=8, width=9, dtype=torch.float32)


def _rois():
    return torch.tensor([[0, 1.0, 1.0, 6.0, 5.0], [1, 2.0, 0.5, 7.5, 7.0]])


@pytest.mark.parametrize("fn", OPS, ids=IDS)
class TestErrors:
    def test_input_not_4d(self, fn):
        with pytest.raises(ValueError, match=r"input must be 4-D.*\(3, 8, 9\)"):
            fn(_x()[0], _rois(), 2)

    def test_input_not_floating(self, fn):
        with pytest.raises(TypeError, match="input must be a floating point tensor"):
            fn(_x().long(), _rois(), 2)

    @pytest.mark.parametrize("bad", [torch.zeros(3, 4), torch.zeros(3, 5, 1), torch.zeros(5)])
    def test_boxes_wrong_shape(self, fn, bad):
        with pytest.raises(ValueError, match=r"boxes must be a \[K, 5\] tensor"):
            fn(_x(), bad, 2)

    def test_list_entry_wrong_shape(self, fn):
        with pytest.raises(ValueError, match=r"boxes\[1\] must be a \[K, 4\] tensor"):
            fn(_x(), [torch.zeros(2, 4), torch.zeros(2, 5)], 2)

    def test_boxes_wrong_type(self, fn):
        with pytest.raises(TypeError, match="boxes must be a Tensor"):
            fn(_x(), "boxes", 2)

    def test_list_longer_than_batch(self, fn):
        with pytest.raises(ValueError, match="list of 3 tensors but input holds 2 images"):
            fn(_x(), [torch.zeros(1, 4)] * 3, 2)

    @pytest.mark.parametrize("index, message", [
        (-1.0, r"rois\[1, 0\] \(batch index\) = -1 is out of range for a batch of 2"),
        (2.0, r"rois\[1, 0\] \(batch index\) = 2 is out of range for a batch of 2"),
        (0.5, r"rois\[1, 0\] \(batch index\) = 0.5 is not an integer"),
    ])
    def test_bad_batch_index(self, fn, index, message):
        rois = _rois()
        rois[1, 0] = index
        with pytest.raises(ValueError, match=message):
            fn(_x(), rois, 2)

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    def test_non_finite_coordinates(self, fn, value):
        rois = _rois()
        rois[0, 3] = value
        with pytest.raises(ValueError, match=r"rois\[0, 3\] = .* is not finite"):
            fn(_x(), rois, 2)

    @pytest.mark.parametrize("size", [0, (2, 0), (-1, 3)])
    def test_output_size_below_one(self, fn, size):
        with pytest.raises(ValueError, match="output_size must be at least 1"):
            fn(_x(), _rois(), size)

    @pytest.mark.parametrize("size", [(2, 3, 4), 2.5, "7"])
    def test_output_size_wrong_type(self, fn, size):
        with pytest.raises(TypeError, match="output_size must be an int or a pair"):
            fn(_x(), _rois(), size)

    @pytest.mark.parametrize("scale", [0.0, -1.0, math.nan, math.inf])
    def test_bad_spatial_scale(self, fn, scale):
        with pytest.raises(ValueError, match="spatial_scale must be a positive finite"):
            fn(_x(), _rois(), 2, scale)

    def test_device_mismatch(self, fn):
        with pytest.raises(ValueError, match="boxes is on meta but input is on cpu"):
            fn(_x(), _rois().to("meta"), 2)

    def test_empty_boxes_give_empty_output_and_zero_grad(self, fn):
        x = _x().requires_grad_(True)
        for boxes in (torch.zeros(0, 5), [torch.zeros(0, 4), torch.zeros(0, 4)], []):
            out = fn(x, boxes, (3, 2))
            assert out.shape == (0, 3, 3, 2)
            out.sum().backward()
            assert x.grad is not None and x.grad.shape == x.shape
            assert torch.count_nonzero(x.grad) == 0
            x.grad = None

    def test_channels_last_and_non_contiguous_input(self, fn):
        x = feature_map(batch=2, channels=4, height=8, width=9, dtype=torch.float64)
        rois = _rois().double()
        expected = fn(x, rois, 3, 0.9)
        torch.testing.assert_close(fn(x.to(memory_format=torch.channels_last), rois, 3, 0.9),
                                   expected)
        wide = feature_map(batch=2, channels=4, height=8, width=18, dtype=torch.float64)
        strided = wide[..., ::2]
        assert not strided.is_contiguous()
        torch.testing.assert_close(fn(strided, rois, 3, 0.9), fn(strided.contiguous(), rois, 3, 0.9))
        grads = []
        for inp in (x.clone(), x.to(memory_format=torch.channels_last)):
            inp.requires_grad_(True)
            fn(inp, rois, 3, 0.9).sum().backward()
            grads.append(inp.grad)
        torch.testing.assert_close(grads[0], grads[1])

    def test_box_dtype_is_converted(self, fn):
        """Documented conversion: boxes follow the input's coordinate dtype."""
        x = _x()
        expected = fn(x, _rois(), 2)
        torch.testing.assert_close(fn(x, _rois().double(), 2), expected)
        torch.testing.assert_close(fn(x, _rois().round().long(), 2), fn(x, _rois().round(), 2))


@pytest.mark.parametrize("fn", [ops.roi_align, ops.roi_warp], ids=["roi_align", "roi_warp"])
def test_unknown_mode(fn):
    with pytest.raises(ValueError, match=r"mode must be one of \('avg', 'max'\), got 'mean'"):
        fn(_x(), _rois(), 2, mode="mean")


def test_sampling_ratio_must_be_int():
    with pytest.raises(TypeError, match="sampling_ratio must be an int"):
        ops.roi_align(_x(), _rois(), 2, sampling_ratio=2.0)


def test_module_arguments_checked_at_construction():
    with pytest.raises(ValueError, match="mode must be one of"):
        ops.RoIAlign(7, mode="median")
    with pytest.raises(ValueError, match="output_size must be at least 1"):
        ops.RoIPool(0)


@pytest.mark.parametrize("fn", [ops.roi_align, ops.roi_warp], ids=["roi_align", "roi_warp"])
def test_absurd_box_with_adaptive_sampling_is_refused_not_hung(fn):
    rois = torch.tensor([[0, 0.0, 0.0, 1e7, 10.0]])
    with pytest.raises(ValueError, match=r"rois\[0\] = .* too large for adaptive sampling"):
        fn(_x(), rois, 7, 1 / 16, sampling_ratio=-1)
    assert fn(_x(), rois, 7, 1 / 16, sampling_ratio=2).shape == (1, 3, 7, 7)
