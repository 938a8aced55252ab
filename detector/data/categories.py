"""The categories a model predicts, and the rule every split of its data
follows: labels map to category ids through the model's list, and a split may
list a subset of it, in any order, but never contradict it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Categories:
    """The categories a model predicts: label i (1..K) is the category with id
    ``ids[i - 1]`` named ``names[i - 1]``. ``source`` says where they were read
    (the training annotations, or a checkpoint), for error messages."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    source: str

    def __post_init__(self):
        if len(self.ids) != len(self.names):
            raise ValueError(f"{self.source}: {len(self.ids)} category ids for "
                             f"{len(self.names)} class names")

    @classmethod
    def of_model(cls, class_names: Sequence[str], category_ids: Sequence[int],
                 source: str) -> "Categories":
        """From a model's ``class_names`` (background first) and ``category_ids``."""
        return cls(tuple(int(i) for i in category_ids), tuple(class_names[1:]), source)

    def check(self, own: Sequence[dict], annotations: Sequence[dict], source: str) -> None:
        """Refuses a split whose categories contradict these: the same id with
        another name, the same name with another id, or a category the model
        does not know that has annotations. A subset, in any order, is fine."""
        name_of = dict(zip(self.ids, self.names))
        id_of = dict(zip(self.names, self.ids))
        counts = Counter(a.get("category_id") for a in annotations)
        for category in own:
            cid, name = category.get("id"), category.get("name")
            if cid in name_of and name_of[cid] != name:
                raise ValueError(f"{source}: category id {cid} is named {name!r}, but "
                                 f"{self.source} names it {name_of[cid]!r}")
            if name in id_of and id_of[name] != cid:
                raise ValueError(f"{source}: category {name!r} has id {cid}, but id "
                                 f"{id_of[name]} in {self.source}")
            if cid not in name_of and counts[cid]:
                raise ValueError(f"{source}: category {name!r} (id {cid}, {counts[cid]} "
                                 f"annotations) is not one of the model's categories "
                                 f"({', '.join(self.names)}; from {self.source})")
