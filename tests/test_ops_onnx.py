"""ops.onnx: each op exported with the dynamo exporter and run in onnxruntime
must give the eager op's output, for every setting and for feature maps and
box counts other than those it was exported with."""

import functools

import pytest
import torch

pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from roi_cases import boxes, feature_map  # noqa: E402

import ops  # noqa: E402
import ops.onnx  # noqa: E402

SCALES = (0.25, 1 / 16)
OUTPUT = (3, 4)  # not square, so that height and width cannot be swapped unnoticed
SHAPES = ((9, 11), (6, 16), (1, 3))  # feature maps (H, W) run through each exported model

# Settings per (op, mode), exported together as the outputs of one model.
SETTINGS = {
    ("roi_align", mode): [dict(spatial_scale=s, sampling_ratio=r, aligned=a, mode=mode)
                          for s in SCALES for r in (2, -1) for a in (False, True)]
    for mode in ("avg", "max")
} | {
    ("roi_warp", mode): [dict(spatial_scale=s, sampling_ratio=r, mode=mode)
                         for s in SCALES for r in (2, -1)]
    for mode in ("avg", "max")
} | {("roi_pool", "max"): [dict(spatial_scale=s) for s in SCALES]}


class _Calls(torch.nn.Module):
    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def forward(self, x, rois):
        return tuple(call(x, rois) for call in self.calls)


def _calls(op, mode):
    fn = getattr(ops, op)
    return [functools.partial(fn, output_size=OUTPUT, **kw) for kw in SETTINGS[op, mode]]


def _rois(height, width, seed, per_kind):
    """Boxes made for each scale (so each scale also sees the other's as tiny or
    huge ones), plus corners that land on half cells at both scales, where
    rounding half away from zero and half to even differ."""
    made = [boxes(2, height, width, s, dtype=torch.float32, seed=seed, per_kind=per_kind)
            for s in SCALES]
    halves = torch.tensor([[0, 2, 6, 22, 30], [1, -6, -2, 10, 14], [1, 8, 24, 88, 120],
                           [0, -24, -8, 40, 56]])
    return torch.cat([*made, halves])


def _export(module, x, rois, dynamic_hw=True):
    dims = ({2: torch.export.Dim("height"), 3: torch.export.Dim("width")} if dynamic_hw else {},
            {0: torch.export.Dim("boxes")})
    program = torch.onnx.export(module.eval(), (x, rois), dynamo=True, verbose=False,
                                custom_translation_table=ops.onnx.translation_table(),
                                dynamic_shapes=dims)
    session = ort.InferenceSession(program.model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return program.model_proto, session


@functools.cache
def _exported(op, mode):
    x = feature_map(2, 8, 7, 10, dtype=torch.float32, seed=5)
    return _export(_Calls(_calls(op, mode)), x, _rois(7, 10, seed=5, per_kind=1))


def _run(session, x, rois):
    return [torch.from_numpy(o) for o in session.run(None, {"x": x.numpy(), "rois": rois.numpy()})]


def _params(pairs):
    return [pytest.param(op, mode, id=f"{op}-{mode}") for op, mode in pairs]


@pytest.mark.parametrize("op, mode", _params(SETTINGS))
def test_matches_eager(op, mode):
    model, session = _exported(op, mode)
    onnx_ops = {node.op_type for node in model.graph.node}
    expected = {"roi_align": "RoiAlign", "roi_warp": "RoiAlign", "roi_pool": "MaxRoiPool"}[op]
    # RoiAlign's own max mode is another operator (see ops.onnx), so max is composed.
    assert (expected in onnx_ops) == (mode == "avg" or op == "roi_pool"), onnx_ops
    for seed, (height, width) in enumerate(SHAPES):
        x = feature_map(2, 8, height, width, dtype=torch.float32, seed=seed)
        rois = _rois(height, width, seed=seed, per_kind=3)
        for call, out in zip(_calls(op, mode), _run(session, x, rois)):
            torch.testing.assert_close(out, call(x, rois), atol=1e-5, rtol=0,
                                       msg=lambda m: f"{op} {call.keywords} {height}x{width}: {m}")


@pytest.mark.parametrize("op, mode", _params([("roi_align", "max"), ("roi_warp", "avg"),
                                              ("roi_pool", "max")]))
@pytest.mark.parametrize("count", [0, 1, 150])
def test_box_count_is_dynamic(op, mode, count):
    _, session = _exported(op, mode)
    x = feature_map(2, 8, 9, 11, dtype=torch.float32, seed=3)
    rois = _rois(9, 11, seed=3, per_kind=5).repeat(2, 1)[:count]
    for call, out in zip(_calls(op, mode), _run(session, x, rois)):
        torch.testing.assert_close(out, call(x, rois), atol=1e-5, rtol=0)


def test_float16_pools_in_float32():
    calls = [functools.partial(ops.roi_align, output_size=OUTPUT, spatial_scale=0.25,
                               sampling_ratio=-1, aligned=True, mode=mode)
             for mode in ("avg", "max")]
    calls += [functools.partial(ops.roi_warp, output_size=OUTPUT, spatial_scale=0.25),
              functools.partial(ops.roi_pool, output_size=OUTPUT, spatial_scale=0.25)]
    x = feature_map(2, 8, 9, 11, dtype=torch.float16)
    rois = _rois(9, 11, seed=0, per_kind=2)
    _, session = _export(_Calls(calls), x, rois, dynamic_hw=False)
    for call, out in zip(calls, _run(session, x, rois)):
        assert out.dtype == torch.float16
        torch.testing.assert_close(out, call(x, rois), atol=1e-3, rtol=0)


def test_roi_pool_argmax_placeholder():
    x = feature_map(2, 8, 9, 11, dtype=torch.float32)
    rois = _rois(9, 11, seed=0, per_kind=2)
    ops.load()
    roi_pool = torch.ops.roi_ops.roi_pool
    module = _Calls([lambda x, rois: roi_pool(x, rois, 0.25, *OUTPUT)])
    _, session = _export(module, x, rois)
    output, argmax = _run(session, x, rois)
    expected, expected_argmax = roi_pool(x, rois, 0.25, *OUTPUT)
    torch.testing.assert_close(output, expected, atol=0, rtol=0)
    assert argmax.dtype == expected_argmax.dtype == torch.int32
    assert argmax.shape == expected_argmax.shape and (argmax == -1).all()


@pytest.mark.parametrize("op", ["roi_align", "roi_warp", "roi_pool"])
def test_output_size_from_dynamic_shapes_is_refused(op):
    ops.load()
    fn = getattr(torch.ops.roi_ops, op)
    extra = {"roi_align": (2, True, False), "roi_warp": (2, False), "roi_pool": ()}[op]
    module = _Calls([lambda x, rois: fn(x, rois, 0.25, x.shape[2] // 2, 3, *extra)])
    x = feature_map(2, 8, 9, 11, dtype=torch.float32)
    with pytest.raises(Exception, match=f"{op} with an output size .* computed from dynamic"):
        _export(module, x, _rois(9, 11, seed=0, per_kind=1))


@pytest.mark.parametrize("op", ["roi_align", "roi_warp"])
def test_max_is_the_same_whatever_the_threads(op):
    """Every sample of one box folds into a single bin, from two onnxruntime
    threads at once. A fold that lets threads update one bin together (as
    ScatterND's max does in onnxruntime) loses updates in about half of such
    runs; with a ramp under the noise, a lost update is a wrong maximum."""
    kwargs = dict(output_size=(1, 1), spatial_scale=1.0, sampling_ratio=128, mode="max")
    call = functools.partial(getattr(ops, op), **kwargs)
    ramp = torch.linspace(0, 1, 64 * 64).reshape(1, 1, 64, 64)
    generator = torch.Generator().manual_seed(0)
    maps = [ramp + 1e-3 * torch.randn(1, 64, 64, 64, generator=generator) for _ in range(20)]
    rois = torch.tensor([[0, 0, 0, 63, 63.0]])
    model, _ = _export(_Calls([call]), maps[0], rois, dynamic_hw=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    for x in maps:
        (out,) = _run(session, x, rois)
        torch.testing.assert_close(out, call(x, rois), atol=1e-5, rtol=0)
