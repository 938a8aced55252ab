"""How the CUDA build finds and checks its toolkit (ops/_cuda_toolkit.py),
with fake toolkits in tmp_path: no GPU and no compiling needed."""

import os
import stat
import sys
from pathlib import Path

import pytest
import torch

from ops import _build, _cuda_toolkit


def _fake_toolkit(root: Path, release: str = "13.0", cudart=("libcudart.so.13",)) -> Path:
    (root / "bin").mkdir(parents=True)
    nvcc = root / "bin" / "nvcc"
    nvcc.write_text(f"#!/bin/sh\necho 'Cuda compilation tools, release {release}, V{release}.1'\n")
    nvcc.chmod(nvcc.stat().st_mode | stat.S_IEXEC)
    (root / "lib").mkdir()
    for name in cudart:
        (root / "lib" / name).write_bytes(b"")
    return root


@pytest.fixture
def bare_env(monkeypatch, tmp_path):
    """No toolkit named by the environment, no nvcc on PATH."""
    for var in ("CUDA_HOME", "CUDA_PATH", "ROI_OPS_NVCC", "TORCH_CUDA_ARCH_LIST"):
        monkeypatch.delenv(var, raising=False)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return monkeypatch


def test_pip_toolkit_is_found_without_cuda_home_or_path(bare_env, tmp_path):
    site = tmp_path / "site"
    home = _fake_toolkit(site / "nvidia" / f"cu{torch.version.cuda.split('.')[0]}"
                         if torch.version.cuda else site / "nvidia" / "cu13")
    bare_env.setattr(sys, "path", [str(site)] + sys.path)
    bare_env.setattr(torch.version, "cuda", torch.version.cuda or "13.0")
    assert _cuda_toolkit.find_toolkit() == home
    assert _cuda_toolkit.find_nvcc() == home / "bin" / "nvcc"


def test_cuda_home_comes_first_and_path_wrappers_are_followed(bare_env, tmp_path):
    real = _fake_toolkit(tmp_path / "cuda-13.0")
    wrapper_dir = tmp_path / "wrappers"
    wrapper_dir.mkdir()
    wrapper = wrapper_dir / "nvcc"
    wrapper.write_text(f'#!/bin/sh\nexec {real}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    bare_env.setenv("PATH", str(wrapper_dir))
    bare_env.setattr(_cuda_toolkit, "pip_toolkit_homes", lambda: [])
    assert _cuda_toolkit.find_toolkit() == real  # the wrapper's target, not /usr/local
    other = _fake_toolkit(tmp_path / "chosen")
    bare_env.setenv("CUDA_HOME", str(other))
    assert _cuda_toolkit.find_toolkit() == other


def test_no_toolkit_with_cuda_forced_is_a_clear_error(bare_env):
    bare_env.setattr(_cuda_toolkit, "find_toolkit", lambda: None)
    bare_env.setenv("ROI_OPS_CUDA", "1")
    bare_env.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(_build.BuildError, match="no CUDA toolkit was found .*CUDA_HOME"):
        _build._cuda_wanted()


def test_nvcc_of_another_major_is_refused(tmp_path):
    home = _fake_toolkit(tmp_path / "old", release="12.4")
    with pytest.raises(RuntimeError, match=r"reports CUDA 12\.4, but this torch was built with "
                                           r"CUDA 13\.0; the kernels need an nvcc of CUDA 13\.x"):
        _cuda_toolkit.check_nvcc_major(home / "bin" / "nvcc", "13.0")
    assert _cuda_toolkit.check_nvcc_major(home / "bin" / "nvcc", "12.8") == (12, 4)


def test_build_refuses_a_toolkit_of_another_major(monkeypatch, tmp_path):
    home = _fake_toolkit(tmp_path / "old", release="12.4")
    monkeypatch.setattr(_cuda_toolkit, "find_toolkit", lambda: home)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(_build.BuildError, match=r"cannot build the CUDA kernels: .*CUDA 12\.4"):
        _build._cuda_build_settings(tmp_path / "build")


def test_versioned_cudart_is_linked_through_a_link(tmp_path):
    home = _fake_toolkit(tmp_path / "pip", cudart=("libcudart.so.13", "libcudart.so.13.0.96"))
    link_dir = _cuda_toolkit.cudart_link_dir(home, tmp_path / "build")
    link = link_dir / "libcudart.so"
    assert link.is_symlink() and os.readlink(link) == str(home / "lib" / "libcudart.so.13")
    # built again: the link is replaced, not an error
    assert _cuda_toolkit.cudart_link_dir(home, tmp_path / "build") == link_dir
    plain = _fake_toolkit(tmp_path / "system", cudart=("libcudart.so", "libcudart.so.13"))
    assert _cuda_toolkit.cudart_link_dir(plain, tmp_path / "build2") is None
    none = _fake_toolkit(tmp_path / "broken", cudart=())
    with pytest.raises(FileNotFoundError, match="no CUDA runtime to link"):
        _cuda_toolkit.cudart_link_dir(none, tmp_path / "build3")


def test_build_settings_for_the_pip_layout(monkeypatch, tmp_path):
    home = _fake_toolkit(tmp_path / "pip")
    monkeypatch.setattr(_cuda_toolkit, "find_toolkit", lambda: home)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0")
    settings = _build._cuda_build_settings(tmp_path / "build")
    assert settings.home == home and settings.arch_list is None
    assert settings.ldflags == [f"-L{tmp_path / 'build' / 'cudart-link'}"]


def test_default_arch_list_without_a_gpu(monkeypatch):
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_arch_list",
                        lambda: ["sm_75", "sm_90", "sm_90a", "compute_90", "sm_120"])
    assert _cuda_toolkit.default_arch_list() == "7.5;9.0;12.0+PTX"
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: [])
    with pytest.raises(RuntimeError, match="set TORCH_CUDA_ARCH_LIST"):
        _cuda_toolkit.default_arch_list()
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0")
    assert _cuda_toolkit.default_arch_list() is None
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # cpp_extension's own default
    assert _cuda_toolkit.default_arch_list() is None


def test_arch_default_is_applied_only_while_building(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    cpp = type("FakeCppExtension", (), {"CUDA_HOME": "/usr/local"})
    settings = _build._CudaSettings(tmp_path, arch_list="9.0+PTX")
    with settings.applied(cpp):
        assert cpp.CUDA_HOME == str(tmp_path)
        assert os.environ["TORCH_CUDA_ARCH_LIST"] == "9.0+PTX"
    assert cpp.CUDA_HOME == "/usr/local" and "TORCH_CUDA_ARCH_LIST" not in os.environ
