"""Writing an exported detector: a torch.export program (.pt2) or an ONNX
model (.onnx), each carrying the metadata that prediction needs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..modeling.rcnn import GeneralizedRCNN
from .graph import metadata, trace

FORMATS = ("pt2", "onnx")
METADATA_KEY = "detector.json"  # the .pt2's extra file; the .onnx's metadata_props key
ONNX_OPSET = 18


def export(model: GeneralizedRCNN, output: str | os.PathLike, format: str | None = None
           ) -> Path:
    """Writes ``model`` (in eval mode, on the CPU) to ``output`` as a .pt2
    program or an .onnx model (``format``; default: from the suffix) and
    returns the path. The file is written whole or not at all."""
    output = Path(output)
    format = format or output.suffix.lstrip(".")
    if format not in FORMATS:
        raise ValueError(f"export: format must be one of {', '.join(FORMATS)} (or given by "
                         f"output's suffix), got {format!r}")
    if output.suffix != f".{format}":
        raise ValueError(f"export: output={output} should end in .{format} for format={format}")
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("export: move the model to the CPU first (model.cpu())")
    program = trace(model)
    info = metadata(model)
    output.parent.mkdir(parents=True, exist_ok=True)
    # model.partial.pt2: torch.export.save warns about a name not ending in .pt2
    partial = output.with_name(f"{output.stem}.partial{output.suffix}")
    if format == "pt2":
        torch.export.save(program, partial, extra_files={METADATA_KEY: json.dumps(info)})
    else:
        _write_onnx(program, partial, info)
    os.replace(partial, output)
    return output


def _write_onnx(program: torch.export.ExportedProgram, path: Path, info: dict) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise RuntimeError("export format=onnx needs onnx and onnxscript: pip install "
                           "'roi-rcnn[export]'") from error
    import ops.onnx

    onnx_program = torch.onnx.export(
        program, dynamo=True, opset_version=ONNX_OPSET, external_data=False,
        custom_translation_table=ops.onnx.translation_table(), input_names=["image"],
        output_names=info["outputs"])
    onnx_program.model.metadata_props[METADATA_KEY] = json.dumps(info)
    onnx_program.save(str(path))
