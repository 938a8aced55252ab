"""Evaluation across processes: every process's COCO results brought together
(each image once), and a computation run on rank 0 with its result shared."""

from __future__ import annotations

from collections.abc import Callable

import torch.distributed as dist


def gather_results(results: list[dict], image_ids: list[int],
                   everywhere: bool = True) -> tuple[list[dict], list[int]] | None:
    """Every process's COCO results and image ids, each image once: a
    distributed sampler repeats images to even out the shards, and an image's
    results are kept from the first process that has it. ``everywhere=False``
    gathers them on rank 0 only (the others get None)."""
    if not (dist.is_available() and dist.is_initialized()):
        return results, sorted(set(image_ids))
    rank, world = dist.get_rank(), dist.get_world_size()
    shards = [None] * world
    if everywhere:
        dist.all_gather_object(shards, (results, image_ids))
    else:
        dist.gather_object((results, image_ids), shards if rank == 0 else None, dst=0)
        if rank != 0:
            return None
    seen, merged = set(), []
    for shard_results, shard_ids in shards:
        new = set(shard_ids) - seen
        merged.extend(r for r in shard_results if r["image_id"] in new)
        seen |= new
    return merged, sorted(seen)


def on_rank_zero(compute: Callable[[], object]) -> object:
    """``compute()`` on rank 0 alone, its result given to every process (the
    value itself without a process group). An error on rank 0 (an interrupt
    included) is raised on every process, so none waits for the others forever."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return compute()
    box = [None]
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", compute())
        except BaseException as error:  # an interrupt too: the others must not wait
            dist.broadcast_object_list([("error", f"{type(error).__name__}: {error}")], src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "error":
        raise RuntimeError(f"evaluation failed on rank 0: {value}")
    return value
