"""rcnn-explain: its geometry against numbers worked out by hand from
ops/csrc/roi_geometry.h, against the kernels themselves, and its command line.

The running example is the seed text's: an 800 x 800 image, a 665 x 665 box
at the origin, stride 32 (a 25 x 25 feature map), 7 x 7 output.
"""

import math

import pytest
import torch

import ops
from detector.cli.explain import main
from ops.explain import Case, bilinear_axis, operators, pool_axis

SCALE = 1 / 32  # a power of two: x / 32 is exact in float32
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_roi_pool_by_hand():
    axis = pool_axis(0, 665, SCALE, output=7, size=25)
    assert axis.hi == 20.78125  # 665 / 32
    assert (axis.start, axis.end) == (0, 21)  # round(0), round(20.78125)
    assert axis.size == 22  # 21 - 0 + 1: the end cell counts
    assert axis.bin == pytest.approx(22 / 7, abs=1e-6)  # 3.142857
    # bin p: [floor(p * 3.142857), ceil((p + 1) * 3.142857))
    #   p=0: floor(0) = 0,            ceil(3.142857) = 4
    #   p=1: floor(3.142857) = 3,     ceil(6.285714) = 7
    #   p=2: floor(6.285714) = 6,     ceil(9.428571) = 10
    #   p=3: floor(9.428571) = 9,     ceil(12.571429) = 13
    #   p=4: floor(12.571429) = 12,   ceil(15.714286) = 16
    #   p=5: floor(15.714286) = 15,   ceil(18.857143) = 19
    #   p=6: floor(18.857143) = 18,   ceil(7 * 3.142857) = ceil(22.0) = 22
    #        (7 * float32(22 / 7) = 21.9999995 rounds to exactly 22.0 in float32)
    assert axis.cells == ((0, 4), (3, 7), (6, 10), (9, 13), (12, 16), (15, 19), (18, 22))
    assert axis.shared() == [1] * 6  # each bin's last cell is the next one's first
    assert axis.read() == (0, 22)  # cells 0..21 = pixels [0, 704)


def test_roi_pool_misalignment_by_hand():
    pool = operators(Case((800, 800), (0, 0, 665, 665), stride=32, output=7))[0]
    errors = pool.misalignment()
    # left/top: cell 0 starts at pixel 0, as the box does
    assert errors["x1"] == errors["y1"] == 0
    # right/bottom: cells end at 22, the box at 20.78125: 1.21875 cells = 39 px
    assert errors["x2"] == errors["y2"] == 22 - 20.78125 == 1.21875
    assert 1.21875 * 32 == 39
    # Ideal bins are 20.78125 / 7 = 2.96875 cells; bin 6 ends at 22 instead of
    # 7 * 2.96875 = 20.78125, the worst edge: 1.21875 cells (39 px).
    ideal = pool.x.ideal()
    assert ideal[6][1] == pytest.approx(20.78125)
    worst = max(abs(e - ie) for (_, e), (_, ie) in zip(pool.x.cells, ideal))
    assert worst == pytest.approx(1.21875)


def test_roi_pool_rounds_halves_away_from_zero():
    # 80 / 32 = 2.5 -> 3 (C's round; Python's round(2.5) would give 2);
    # 208 / 32 = 6.5 -> 7; size 7 - 3 + 1 = 5 cells
    axis = pool_axis(80, 208, SCALE, output=5, size=25)
    assert (axis.start, axis.end, axis.size) == (3, 7, 5)
    assert axis.cells == ((3, 4), (4, 5), (5, 6), (6, 7), (7, 8))  # bin 5 / 5 = 1


def test_roi_pool_box_at_the_border_reads_nothing():
    # 790 / 32 = 24.6875 -> 25 and 800 / 32 = 25 -> 25: cells [25, 26) of a
    # 25-cell map (0..24), clipped to [25, 25): every bin empty, output 0.
    axis = pool_axis(790, 800, SCALE, output=7, size=25)
    assert axis.cells == ((25, 25),) * 7 and axis.read() is None
    out = ops.roi_pool(torch.ones(1, 1, 25, 25), torch.tensor([[0, 790, 0, 800, 640.]]), 7, SCALE)
    assert out.abs().sum() == 0


def test_roi_warp_by_hand():
    axis = bilinear_axis(0, 665, SCALE, output=7, sampling_ratio=2, rounded=True, aligned=False)
    assert axis.corners == (0, 21)  # round(0), round(20.78125)
    assert axis.size == 21  # 21 - 0: no + 1 here, unlike roi_pool
    assert axis.bin == 3  # 21 / 7
    # sample i of bin p: 0 + p * 3 + (i + 0.5) * 3 / 2
    assert axis.samples[0] == (0.75, 2.25) and axis.samples[6] == (18.75, 20.25)
    # Sample coordinate v reads around u = v + 0.5: the bins span [0.5, 21.5].
    assert axis.read() == (0.5, 21.5)
    # left +0.5 cells = 16 px; right 21.5 - 20.78125 = 0.71875 cells = 23 px,
    # of which rounding 21 - 20.78125 = 0.21875 cells = 7 px.
    assert axis.read()[0] - axis.lo == 0.5
    assert axis.read()[1] - axis.hi == 0.71875 and 0.71875 * 32 == 23
    assert axis.read()[1] - axis.half_cell - axis.hi == 0.21875 and 0.21875 * 32 == 7


def test_roi_align_by_hand():
    legacy = bilinear_axis(0, 665, SCALE, 7, sampling_ratio=2, rounded=False, aligned=False)
    assert (legacy.start, legacy.size) == (0, 20.78125)  # nothing rounded
    assert legacy.bin == 2.96875  # 20.78125 / 7
    # 0 + (0 + 0.5) * 2.96875 / 2 = 0.7421875, (1 + 0.5) * 2.96875 / 2 = 2.2265625
    assert legacy.samples[0] == (0.7421875, 2.2265625)
    # No rounding; only the half cell: [0.5, 21.28125], 16 px on every edge.
    assert legacy.read() == (0.5, 21.28125) and legacy.half_cell == 0.5

    aligned = bilinear_axis(0, 665, SCALE, 7, sampling_ratio=2, rounded=False, aligned=True)
    assert (aligned.start, aligned.size) == (-0.5, 20.78125)  # both corners - 0.5
    assert aligned.samples[0] == (-0.5 + 0.7421875, -0.5 + 2.2265625)
    assert aligned.read() == (0, 20.78125) and aligned.half_cell == 0  # exactly the box

    align = operators(Case((800, 800), (0, 0, 665, 665), stride=32, output=7))[3]
    assert set(align.misalignment().values()) == {0}


def test_roi_align_small_box_and_adaptive_grid():
    # aligned=False: a 10 px box at stride 32 is 0.3125 cells, forced to 1
    # cell, bin 1 / 2 = 0.5; adaptive grid: ceil(0.5) = 1 sample per bin.
    axis = bilinear_axis(100, 110, SCALE, 2, sampling_ratio=0, rounded=False, aligned=False)
    assert (axis.size, axis.bin, axis.grid) == (1, 0.5, 1)
    assert axis.samples == ((3.125 + 0.25,), (3.125 + 0.75,))  # 100 / 32 = 3.125
    # aligned=True keeps 0.3125 cells: bin 0.15625, ceil(0.15625) = 1 sample
    axis = bilinear_axis(100, 110, SCALE, 2, sampling_ratio=0, rounded=False, aligned=True)
    assert (axis.size, axis.bin, axis.grid) == (0.3125, 0.15625, 1)
    # 665 / 7 px -> 20.78125 / 7 = 2.96875 cells, ceil = 3 samples per bin
    assert bilinear_axis(0, 665, SCALE, 7, 0, rounded=False, aligned=False).grid == 3


def _assert_pool_geometry_is_the_kernels(boxes, stride, output, height, width):
    """A map whose cells hold their own index: the max of each bin is its
    range's bottom-right cell, and on the negated map its top-left cell."""
    index = torch.arange(height * width, dtype=torch.float32).view(1, 1, height, width)
    rois = torch.tensor([[0, *b] for b in boxes], dtype=torch.float32)
    last = ops.roi_pool(index, rois, output, 1 / stride)
    first = ops.roi_pool(-index, rois, output, 1 / stride)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        xs = pool_axis(x1, x2, 1 / stride, output, width).cells
        ys = pool_axis(y1, y2, 1 / stride, output, height).cells
        for ph, (h0, h1) in enumerate(ys):
            for pw, (w0, w1) in enumerate(xs):
                empty = h1 <= h0 or w1 <= w0
                assert last[k, 0, ph, pw] == (0 if empty else (h1 - 1) * width + w1 - 1)
                assert first[k, 0, ph, pw] == (0 if empty else -(h0 * width + w0))


def test_roi_pool_bin_edges_are_float32():
    # 64 / 32 = 2, 256 / 32 = 8: 8 - 2 + 1 = 7 cells in 13 bins. float32(7 / 13)
    # lies a hair above 7 / 13, and 13 * it = 7.0000005 in float32: the last
    # bin ends at 2 + ceil(7.0000005) = 10, a cell past the box's last cell
    # (exact arithmetic: 2 + 7 = 9); it starts at 2 + floor(12 * 0.538) = 8.
    axis = pool_axis(64, 256, SCALE, output=13, size=25)
    assert axis.size == 7 and axis.cells[-1] == (8, 10)
    # 0 / 8 = 0, 224 / 8 = 28: 29 cells in 7 bins. 7 * float32(29 / 7) is
    # exactly 29.0 in float32 (in float64, 7 * (29 / 7) = 29.000000000000004,
    # whose ceil would be 30): the last bin ends at 29.
    axis = pool_axis(0, 224, 1 / 8, output=7, size=100)
    assert axis.size == 29 and axis.cells[-1][1] == 29
    _assert_pool_geometry_is_the_kernels([(64, 64, 256, 256)], 32, 13, 25, 25)
    _assert_pool_geometry_is_the_kernels([(0, 0, 224, 224)], 8, 7, 100, 100)


BOXES = [(0, 0, 665, 665), (80, 48, 208, 400), (10, 300, 47, 330), (500, 700, 800, 800),
         (33.3, 17.9, 301.6, 512.2), (16, 16, 48, 48), (790, 0, 800, 640)]


@pytest.mark.parametrize("stride, output", [(32, 7), (16, 3), (8, 5), (32, 13)])
def test_roi_pool_geometry_is_the_kernels(stride, output):
    size = math.ceil(800 / stride)
    _assert_pool_geometry_is_the_kernels(BOXES, stride, output, size, size)


@pytest.mark.parametrize("sampling_ratio", [2, 1, 0])
@pytest.mark.parametrize("op", ["roi_warp", "roi_align", "roi_align_aligned"])
def test_bilinear_samples_are_the_kernels(op, sampling_ratio):
    """On a ramp (value = x) bilinear interpolation is exact, so each bin's
    average is the mean x of its samples and its max the largest; on the
    negated ramp the max is minus the smallest. Likewise along y."""
    size, output, stride = 25, 7, 32
    boxes = [(64, 70, 700, 690), (100, 110, 140, 131), (33.3, 40.1, 301.6, 512.2)]
    ramp = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size).expand(1, 1, size, size)
    rois = torch.tensor([[0, *b] for b in boxes], dtype=torch.float32)
    rounded, aligned = op == "roi_warp", op == "roi_align_aligned"

    def pooled(feature, mode):
        feature = feature.contiguous()
        if rounded:
            return ops.roi_warp(feature, rois, output, 1 / stride, sampling_ratio, mode)
        return ops.roi_align(feature, rois, output, 1 / stride, sampling_ratio, aligned, mode)

    for k, (x1, y1, x2, y2) in enumerate(boxes):
        for feature, (lo, hi) in ((ramp, (x1, x2)), (ramp.transpose(2, 3), (y1, y2))):
            samples = bilinear_axis(lo, hi, 1 / stride, output, sampling_ratio, rounded,
                                    aligned).samples
            # away from the map's borders, where interpolation is exact
            assert all(0 <= v <= size - 1 for bin_samples in samples for v in bin_samples)
            for mode, sign, reduce in (("avg", 1, lambda s: sum(s) / len(s)),
                                       ("max", 1, max), ("max", -1, lambda s: -min(s))):
                expected = torch.tensor([reduce(s) for s in samples], dtype=torch.float32)
                if feature is not ramp:
                    expected = expected[:, None]  # a column: varies along y
                torch.testing.assert_close(pooled(sign * feature, mode)[k, 0],
                                           expected.expand(output, output), atol=2e-5, rtol=0)


EXAMPLE = ["--image-size", "800", "800", "--box", "0", "0", "665", "665", "--stride", "32",
           "--output", "7"]


def test_command_prints_the_numbers_and_writes_a_png(tmp_path, capsys):
    figure = tmp_path / "explain.png"
    assert main(EXAMPLE + ["--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    for expected in [
        "665 / 32 = 20.78125",
        "round(20.78125) = 21",
        "max(21 - 0 + 1, 1) = 22 cells; bin 22 / 7 = 3.142857 cells",
        "[0, 4) [3, 7) [6, 10) [9, 13) [12, 16) [15, 19) [18, 22)",
        "x2 +1.21875 cells (+39 px)",  # roi_pool's right edge
        "worst bin edge: 1.21875 cells (39 px)",
        "bin 21 / 7 = 3 cells",  # roi_warp
        "x2 +0.21875 cells (+7 px)",  # roi_warp's rounding
        "bin 20.78125 / 7 = 2.96875 cells",  # roi_align
        "bin 0: 0.742188, 2.226562",
        "x1 0 cells (0 px), y1 0 cells (0 px), x2 0 cells (0 px), y2 0 cells (0 px)",
        "the seed text floors the box (20.78125 cells to 20) and the bin (20 / 7 = 2.86 to 2)",
    ]:
        assert expected in out
    assert figure.read_bytes()[:8] == PNG_MAGIC
    assert not list(tmp_path.glob("*.partial*"))


def test_no_figure_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(EXAMPLE + ["--no-figure"]) == 0
    assert "20.78" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change, message", [
    ({"--stride": ["0"]}, "--stride must be a positive integer, got 0"),
    ({"--output": ["-1"]}, "--output must be a positive integer, got -1"),
    ({"--image-size": ["0", "800"]}, "--image-size must be two positive integers"),
    ({"--box": ["10", "0", "5", "665"]}, "--box x2 must be greater than x1"),
    ({"--box": ["0", "10", "665", "10"]}, "--box y2 must be greater than y1"),
    ({"--box": ["0", "0", "900", "665"]}, "--box 0 0 900 665 lies outside the 800 x 800 image"),
    ({"--box": ["-1", "0", "665", "665"]}, "lies outside"),
    ({"--box": ["0", "0", "nan", "665"]}, "--box must be finite"),
    ({"--stride": ["x"]}, "--stride: invalid int value"),
])
def test_bad_arguments_exit_2_naming_the_argument(change, message, capsys):
    args = list(EXAMPLE)
    for flag, values in change.items():
        at = args.index(flag) + 1
        args[at:at + len(values)] = values
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--no-figure"])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
