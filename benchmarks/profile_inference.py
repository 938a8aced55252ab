"""Where the inference time of the project's Mask R-CNN R50-FPN goes, stage by
stage, and how much of it is convolution:

    python benchmarks/profile_inference.py [--size 800] [--repeats 3] [--plain]

The model is the one rcnn-predict runs (channels-last, BatchNorm folded;
--plain: neither), with torchvision's maskrcnn_resnet50_fpn architecture and
seeded random weights, on bench_detector.py's two 480x640 images. Stage times
are medians over --repeats passes, measured with forward hooks (the CPU runs
each stage to completion, so wall-clock stamps between stages are exact); the
operator table is torch.profiler's over one more pass.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch
from bench_detector import build, inputs, torchvision_model

# (stage, the module or method that is timed); "backbone" and "rpn" are timed
# whole and the parts timed inside them are subtracted (the ResNet is not
# called as a module of its own, and the RPN anchors and box decoding are the
# RPN's remainder).
STAGES = [
    ("resize + normalize + batch", "transform"),
    ("backbone", "backbone"),
    ("backbone: FPN", "backbone.fpn"),
    ("rpn", "rpn"),
    ("RPN head (convolutions)", "rpn.head"),
    ("RPN proposals (top-k, NMS)", "rpn.select_proposals"),
    ("box ROI Align", "roi_heads.box_pooler"),
    ("box head (MLP) + predictor", "roi_heads.box_branch"),
    ("box postprocess (decode, NMS)", "roi_heads.box_branch.inference"),
    ("mask ROI Align", "roi_heads.mask_pooler"),
    ("mask head (convolutions) + predictor", "roi_heads.mask_branch"),
    ("mask paste to image size", "transform.to_original"),
]


def rows(median: dict) -> list[tuple[str, float]]:
    """The table's rows (seconds), the nested stages split into their parts."""
    m = collections.defaultdict(float, median)
    table = [("resize + normalize + batch", m["resize + normalize + batch"]),
             ("backbone: ResNet", m["backbone"] - m["backbone: FPN"]),
             ("backbone: FPN", m["backbone: FPN"]),
             ("RPN head (convolutions)", m["RPN head (convolutions)"]),
             ("RPN anchors + box decoding", m["rpn"] - m["RPN head (convolutions)"]
              - m["RPN proposals (top-k, NMS)"]),
             ("RPN proposals (top-k, NMS)", m["RPN proposals (top-k, NMS)"])]
    table += [(stage, m[stage]) for stage, _ in STAGES[6:]]
    table.append(("other (ROI head glue, mask probabilities)",
                  m["total"] - sum(seconds for _, seconds in table)))
    return table


def _resolve(model, path):
    owner = model
    *parents, name = path.split(".")
    for part in parents:
        owner = getattr(owner, part)
    return owner, name


def instrument(model, times):
    """Wraps each stage's forward (or method) so that its wall time is added
    to times[stage] on every call."""
    for stage, path in STAGES:
        owner, name = _resolve(model, path)
        target = getattr(owner, name)
        if isinstance(target, torch.nn.Module):
            owner, name, target = target, "forward", target.forward

        def timed(*args, _fn=target, _stage=stage, **kwargs):
            start = time.perf_counter()
            out = _fn(*args, **kwargs)
            times[_stage] += time.perf_counter() - start
            return out

        setattr(owner, name, timed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=800)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--plain", action="store_true", help="NCHW, BatchNorm not folded")
    args = parser.parse_args()
    import tempfile
    with tempfile.NamedTemporaryFile(suffix=".pt") as f:
        torch.save(torchvision_model(args.size).state_dict(), f.name)
        model = build("ours", args.size, f.name, channels_last=not args.plain)
    if not args.plain:
        model.fuse()
    model.eval()
    images, _ = inputs("cpu")
    passes = []
    with torch.no_grad():
        model(images)  # warm-up
        for _ in range(args.repeats + 1):
            times = collections.defaultdict(float)
            if not passes:
                instrument(model, times)
                holder = times
            else:
                holder.clear()
            start = time.perf_counter()
            model(images)
            holder["total"] = time.perf_counter() - start
            passes.append(dict(holder))
        passes = passes[1:]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            model(images)
    median = {key: statistics.median(p.get(key, 0.0) for p in passes) for key in passes[0]}
    total = median["total"]
    variant = "plain NCHW" if args.plain else "channels-last, BatchNorm folded"
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {variant}, 2 images "
          f"480x640 resized to {args.size}, median of {args.repeats}")
    print("| stage | ms | share |")
    print("|---|---|---|")
    for stage, seconds in rows(median):
        print(f"| {stage} | {seconds * 1e3:.0f} | {seconds / total:.0%} |")
    print(f"| **total** | {total * 1e3:.0f} | 100% |")
    events = prof.key_averages()
    conv = sum(e.self_cpu_time_total for e in events
               if e.key in ("aten::mkldnn_convolution", "aten::convolution_overrideable",
                            "aten::_slow_conv2d_forward", "aten::slow_conv_transpose2d",
                            "aten::mkldnn_convolution_transpose"))
    linear = sum(e.self_cpu_time_total for e in events if e.key in ("aten::addmm", "aten::mm"))
    all_ops = sum(e.self_cpu_time_total for e in events)
    print(f"\nconvolution kernels {conv / 1e3:.0f} ms ({conv / all_ops:.0%} of operator time), "
          f"fully connected {linear / 1e3:.0f} ms ({linear / all_ops:.0%}); the rest "
          f"{(all_ops - conv - linear) / 1e3:.0f} ms ({(all_ops - conv - linear) / all_ops:.0%})")
    print("\nTop operators by self time:")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
