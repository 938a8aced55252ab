"""Images drawn for the tests: rectangles and ellipses with exact masks."""

import torch


def shapes_dataset(count=4, height=96, width=128, seed=0):
    """Images with one rectangle (label 1) and one ellipse (label 2) each."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    samples = []
    for _ in range(count):
        image = torch.rand(3, height, width, generator=g) * 0.2
        masks, boxes = [], []
        for label in (1, 2):
            h, w = (int(v) for v in torch.randint(24, 48, (2,), generator=g))
            y0 = int(torch.randint(0, height - h, (1,), generator=g))
            x0 = int(torch.randint(0, width - w, (1,), generator=g))
            if label == 1:
                mask = (ys >= y0) & (ys < y0 + h) & (xs >= x0) & (xs < x0 + w)
            else:
                cy, cx = y0 + (h - 1) / 2, x0 + (w - 1) / 2
                mask = ((ys - cy) / (h / 2)) ** 2 + ((xs - cx) / (w / 2)) ** 2 <= 1
            colour = torch.rand(3, 1, 1, generator=g) * 0.6 + 0.4
            image = torch.where(mask, colour, image)
            row, col = torch.nonzero(mask, as_tuple=True)
            boxes.append([col.min(), row.min(), col.max() + 1, row.max() + 1])
            masks.append(mask)
        samples.append((image, {"boxes": torch.tensor(boxes, dtype=torch.float32),
                                "labels": torch.tensor([1, 2]),
                                "masks": torch.stack(masks).to(torch.uint8)}))
    return samples
