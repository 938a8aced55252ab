"""The CUDA sources compile (no GPU needed): a CUDA source that does not
compile never lands. Compiles once, for sm_90 (H100/H200)."""

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
