"""ops.nms (the detector's NMS in exported programs): the same boxes kept, in
the same order, as torchvision's NMS; traceable by torch.export with a
data-dependent output length; and onnxruntime's NonMaxSuppression through
ops.onnx keeps the same ones."""

import pytest
import torch
import torchvision

import ops


def _boxes(count: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(count, 2, generator=g) * 100
    size = torch.rand(count, 2, generator=g) * 40
    # scores on a grid of 1/4096: no two equal unless drawn equal, so the order is defined
    scores = torch.randperm(4096, generator=g)[:count].float() / 4096
    return torch.cat([corner, corner + size], 1), scores


@pytest.mark.parametrize("count", [0, 1, 7, 500])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.7, 1.0])
def test_same_as_torchvision(count, threshold):
    boxes, scores = _boxes(count, seed=count)
    kept = ops.nms(boxes, scores, threshold)
    assert kept.dtype == torch.int64
    assert torch.equal(kept, torchvision.ops.nms(boxes, scores, threshold))


def test_float64_and_nested_boxes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 9, 9], [0, 0, 10, 10.5], [20, 20, 30, 30]],
                         dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6], dtype=torch.float64)
    # IoU(0, 1) = 0.64 and IoU(0, 2) = 100 / 105: kept at 0.99, not at 0.5
    assert ops.nms(boxes, scores, 0.5).tolist() == [0, 3]
    assert ops.nms(boxes, scores, 0.99).tolist() == [0, 1, 2, 3]
    assert ops.nms(boxes, scores, 0.9).tolist() == [0, 1, 3]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"nms: boxes must be a \[K, 4\]"):
        ops.nms(torch.zeros(3, 5), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"nms: scores must be a \[K\] tensor for 3 boxes"):
        ops.nms(torch.zeros(3, 4), torch.zeros(4), 0.5)


class _NMS(torch.nn.Module):
    def forward(self, boxes, scores):
        return ops.nms(boxes, scores, 0.5)


def _exported():
    boxes, scores = _boxes(50, seed=1)
    count = torch.export.Dim("count", min=0, max=100_000)
    return torch.export.export(_NMS(), (boxes, scores),
                               dynamic_shapes={"boxes": {0: count}, "scores": {0: count}},
                               strict=False)


def test_exported_program_keeps_the_same_boxes():
    program = _exported()
    for count in (0, 3, 400):
        boxes, scores = _boxes(count, seed=10 + count)
        assert torch.equal(program.module()(boxes, scores), ops.nms(boxes, scores, 0.5))


def test_onnx_nonmaxsuppression_keeps_the_same_boxes(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import ops.onnx

    path = tmp_path / "nms.onnx"
    torch.onnx.export(_exported(), dynamo=True, f=path,
                      custom_translation_table=ops.onnx.translation_table(),
                      input_names=["boxes", "scores"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for count in (0, 3, 400):
        boxes, scores = _boxes(count, seed=20 + count)
        (kept,) = session.run(None, {"boxes": boxes.numpy(), "scores": scores.numpy()})
        assert kept.tolist() == ops.nms(boxes, scores, 0.5).tolist()
