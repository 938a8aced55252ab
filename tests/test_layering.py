"""The layers of the tree, read from the imports (every ``import``, lazy ones
too, parsed with ast): ops knows no detector; the models know no Lightning,
Hydra or command; the data knows no model; the library knows no command; and
every import between detector/'s rooms goes down the layers below, never up."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# each room imports only rooms of earlier layers
LAYERS = [
    {"ops"},
    {"detector.data", "detector.visualization", "detector.weights"},
    {"detector.modeling", "detector.evaluation"},
    {"detector.export", "detector.loading"},
    {"detector.training", "detector.predict"},
    {"detector.cli"},
]
LAYER = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
FRAMEWORKS = ("pytorch_lightning", "lightning", "hydra", "omegaconf")


def _module(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if package else parts), package


def _imports(path: Path) -> set[str]:
    """The absolute names every import in ``path`` reaches (``from a import b``
    gives a and a.b, since b may be a module)."""
    module, package = _module(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if package else module.split(".")[:-1]
                here = here[:len(here) - node.level + 1]
                base = ".".join(here + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _room(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] == "ops":
        return "ops"
    if parts[0] == "detector" and len(parts) > 1 and parts[1] != "configs":
        return f"detector.{parts[1]}"
    return None


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_every_import_between_rooms_goes_down_the_layers():
    upward, unplaced = [], set()
    for path in _sources("ops", "detector"):
        room = _room(_module(path)[0])
        if room is None:  # detector/__init__.py: the public facade
            continue
        if room not in LAYER:
            unplaced.add(room)
            continue
        for name in _imports(path):
            target = _room(name)
            if target is None or target == room:
                continue
            if target not in LAYER:
                unplaced.add(target)
            elif LAYER[target] >= LAYER[room]:
                upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not unplaced, f"rooms not placed in a layer of tests/test_layering.py: {unplaced}"
    assert not upward, "imports that go up or sideways:\n" + "\n".join(sorted(upward))


@pytest.mark.parametrize("folder, forbidden", [
    ("ops", ("detector",) + FRAMEWORKS),  # ops depends on torch alone
    ("detector/modeling", FRAMEWORKS + ("detector.training", "detector.cli", "detector.data")),
    ("detector/weights", FRAMEWORKS + ("detector.modeling", "detector.loading")),
    ("detector/data", ("detector.modeling", "detector.weights", "detector.loading",
                       "detector.training", "detector.export", "detector.predict")),
])
def test_a_layer_knows_nothing_of_what_it_must_not(folder, forbidden):
    found = [f"{path.relative_to(ROOT)} imports {name}" for path in _sources(folder)
             for name in _imports(path)
             if any(name == f or name.startswith(f + ".") for f in forbidden)]
    assert not found, "\n".join(sorted(found))


def test_the_library_knows_no_command():
    found = [f"{path.relative_to(ROOT)} imports {name}" for path in _sources("detector", "ops")
             if "cli" not in path.relative_to(ROOT).parts
             for name in _imports(path)
             if name == "detector.cli" or name.startswith("detector.cli.")]
    assert not found, "\n".join(sorted(found))


def test_the_scan_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    """The scanner itself: a relative import two levels up, inside a function,
    resolves to the absolute module it names."""
    folder = ROOT / "detector" / "modeling" / "roi_heads"
    source = "def f():\n    from ..boxes import BoxCoder\n    from . import mask\n"
    path = folder / "_scan_probe.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert {"detector.modeling.boxes", "detector.modeling.boxes.BoxCoder",
            "detector.modeling.roi_heads.mask"} <= _imports(path)
