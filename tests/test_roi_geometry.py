"""roi_geometry.h's bin_value, which the CUDA forward runs, checked on CPU:
a small program pools with it exactly as the CUDA kernel calls it, and its
bins are compared with torchvision's roi_align and the pure-PyTorch
reference, and with zeros on an axis of no cells."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torchvision

from ops import reference
from ops._build import _CSRC, _compiler
from ops._library import ALIGN_HALF_PIXEL, ALIGN_LEGACY, WARP

PROBE = Path(__file__).parent / "csrc" / "bin_value_probe.cpp"
BOXES = [[1.3, 0.7, 9.6, 6.2], [-3.0, -2.5, 4.0, 3.0], [8.0, 5.0, 30.0, 20.0],
         [2.0, 2.0, 2.0, 2.0], [-9.0, -9.0, -4.0, -4.0], [0.0, 0.0, 200.0, 3.0]]


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    compiler = _compiler()
    if shutil.which(compiler) is None:
        pytest.skip(f"no C++ compiler ({compiler})")
    exe = tmp_path_factory.mktemp("probe") / "bin_value_probe"
    include = Path(torch.__file__).parent / "include"
    subprocess.run([compiler, "-std=c++17", "-O1", f"-I{_CSRC}", f"-I{include}", str(PROBE),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    return exe


def _pool(exe, plane, boxes, scale, out, sampling, box_mode, max_mode):
    height, width = plane.shape
    lines = [f"{height} {width}", " ".join(repr(v) for v in plane.flatten().tolist()),
             f"{scale!r} {out[0]} {out[1]} {sampling} {box_mode} {int(max_mode)} {len(boxes)}"]
    lines += [" ".join(repr(float(v)) for v in box) for box in boxes]
    result = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True,
                            text=True, check=True)
    values = [float(v) for v in result.stdout.split()]
    return torch.tensor(values, dtype=torch.float64).reshape(len(boxes), 1, *out)


def _rois(boxes):
    return torch.tensor([[0.0, *b] for b in boxes], dtype=torch.float64)


@pytest.mark.parametrize("sampling", [-1, 1, 2, 3])
@pytest.mark.parametrize("aligned", [False, True])
def test_bin_value_matches_torchvision(probe, sampling, aligned):
    plane = torch.randn(11, 13, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = _pool(probe, plane, BOXES, 0.5, (3, 4), sampling,
                ALIGN_HALF_PIXEL if aligned else ALIGN_LEGACY, False)
    expected = torchvision.ops.roi_align(plane[None, None], _rois(BOXES), (3, 4), 0.5,
                                         sampling, aligned)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("box_mode, mode", [(ALIGN_LEGACY, "max"), (WARP, "max"), (WARP, "avg")])
def test_bin_value_max_mode_and_warp_match_the_reference(probe, box_mode, mode):
    plane = torch.randn(9, 7, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    got = _pool(probe, plane, BOXES, 0.7, (2, 3), 2, box_mode, mode == "max")
    fn = reference.roi_warp if box_mode == WARP else reference.roi_align
    expected = fn(plane[None, None], _rois(BOXES), (2, 3), 0.7, 2, mode=mode)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_bin_value_by_hand(probe):
    """Box (0, 0, 1, 1), one bin, one sample at its centre (0.5, 0.5) of [[1, 2], [3, 4]]:
    the mean of the four cells, 2.5. Box (0, 1.25, 0, 1.25), grown to one cell: its sample
    at (y, x) = (1.75, 0.5) lies past the last row's centre and is clamped onto it: 3.5."""
    plane = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    got = _pool(probe, plane, [[0.0, 0.0, 1.0, 1.0], [0.0, 1.25, 0.0, 1.25]], 1.0, (1, 1), 1,
                ALIGN_LEGACY, False)
    assert got.flatten().tolist() == [2.5, 3.5]


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_bin_value_on_an_axis_of_no_cells_reads_nothing(probe, size):
    """The kernels' own guard, below the checks that refuse such maps: samples
    in [-1, 0] on an axis of size 0 are invalid and give 0 (they used to read
    the cell before the plane)."""
    got = _pool(probe, torch.zeros(size, dtype=torch.float64), [[1.0, -0.5, 5.0, 0.5],
                [-0.5, 1.0, 0.5, 5.0]], 1.0, (2, 2), 2, ALIGN_LEGACY, False)
    assert got.abs().max().item() == 0.0
