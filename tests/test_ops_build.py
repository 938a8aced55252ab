"""The build: the CUDA sources compile (no GPU needed; once, for sm_90,
H100/H200), nothing is compiled on import, what is missing is named, and the
cache follows the sources."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

from ops import _build


def test_cuda_sources_compile(tmp_path):
    if torch.version.cuda is None:
        pytest.skip("this torch build has no CUDA support")
    nvcc = _build.find_nvcc()
    if nvcc is None:
        pytest.skip(f"no nvcc for CUDA >= {torch.version.cuda} (pip install 'cuda-toolkit[nvcc]')")
    objects = _build.compile_cuda_sources(nvcc, tmp_path)
    assert {o.name for o in objects} == {s.stem + ".o" for s in _build.cuda_sources()}
    assert all(o.stat().st_size > 0 for o in objects)


def test_cpu_sources_are_packaged():
    """Every source the build uses exists (and ships with the package)."""
    for source in _build.cpu_sources() + _build.cuda_sources():
        assert source.is_file(), source
    assert _build.cuda_sources(), "no CUDA sources found"


def _python(code: str, cache, **env) -> subprocess.CompletedProcess:
    environ = {**os.environ, "ROI_OPS_CACHE": str(cache), **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environ, timeout=300, check=False)


def test_importing_compiles_nothing(tmp_path):
    """import ops / detector and the tools that need no kernel (report, explain)
    neither compile nor load the kernels, even on a machine with no build yet."""
    cache = tmp_path / "cache"
    done = _python("import ops, detector, detector.report, ops.explain, ops.reference\n"
                   "from ops import _build\n"
                   "assert not _build.is_loaded()\n"
                   "print('ok')", cache)
    assert done.returncode == 0, done.stderr
    assert "compiling" not in done.stderr
    assert not cache.exists() or not any(cache.iterdir())


def test_missing_compiler_is_named(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with pytest.raises(_build.BuildError, match=r"no C\+\+ compiler was found "
                                                r"\('/nonexistent/c\+\+' is not on PATH"):
        _build.preflight()


def test_missing_ninja_is_named(monkeypatch):
    monkeypatch.setattr(_build._cpp_extension(), "is_ninja_available", lambda: False)
    with pytest.raises(_build.BuildError, match="pip install ninja"):
        _build.preflight()


def test_cache_key_follows_the_sources(tmp_path, monkeypatch):
    """A changed source (a header too) gives another cached library; the same
    sources give the same one, wherever they are checked out."""
    copy = tmp_path / "csrc"
    shutil.copytree(_build._CSRC, copy)
    key = _build.build_key(False)
    monkeypatch.setattr(_build, "_CSRC", copy)
    assert _build.build_key(False) == key
    header = copy / "roi_geometry.h"
    header.write_text(header.read_text() + "\n// changed\n")
    assert _build.build_key(False) != key
    monkeypatch.setenv("ROI_OPS_CACHE", str(tmp_path / "elsewhere"))
    assert _build.cached_library(False).parent == tmp_path / "elsewhere"


@pytest.mark.skipif(sys.platform != "linux", reason="gcc/clang on Linux")
def test_openmp_flags_found_here():
    """This machine's compiler takes OpenMP, so the CPU kernels run on every core."""
    assert _build.openmp_flags() is not None
