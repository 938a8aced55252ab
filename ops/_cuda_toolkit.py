"""Finds the CUDA toolkit that builds the CUDA kernels, and what the build
needs from it beyond what torch.utils.cpp_extension does by itself.

Where the toolkit is looked for, in order (the first with an ``nvcc`` wins):
    $ROI_OPS_NVCC (its bin/..), $CUDA_HOME, $CUDA_PATH;
    the pip toolkit of torch's CUDA major (``pip install 'cuda-toolkit[nvcc,cccl]'``,
    the ``dev`` extra) in site-packages/nvidia/cu<major>, whose headers match the
    CUDA libraries torch's wheel ships (a system toolkit may lack some, cusparse.h);
    an ``nvcc`` on PATH (a wrapper script is followed to the real one);
    /usr/local/cuda.

The pip toolkit ships ``libcudart.so.<major>`` without the ``libcudart.so``
that cpp_extension links with ``-lcudart``: the build then links through a
directory holding that one link (:func:`cudart_link_dir`). nvcc must be of
torch's CUDA major (:func:`check_nvcc_major`).

Architectures: $TORCH_CUDA_ARCH_LIST when set; else those of the visible GPUs
(cpp_extension's own default); with no GPU visible, every architecture this
torch was built for (``torch.cuda.get_arch_list()``, the last one also as PTX).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch


def _nvcc_in(home: Path) -> Path | None:
    nvcc = home / "bin" / ("nvcc.exe" if sys.platform == "win32" else "nvcc")
    return nvcc if nvcc.is_file() else None


def _real_nvcc(path: Path) -> Path:
    """The nvcc a small wrapper script (``exec /x/bin/nvcc "$@"``) runs, else path."""
    path = path.resolve()
    try:
        if path.stat().st_size < 4096 and path.read_bytes()[:2] == b"#!":
            match = re.search(r"exec\s+(\S*/nvcc)\b", path.read_text(errors="replace"))
            if match and Path(match.group(1)).is_file():
                return Path(match.group(1)).resolve()
    except OSError:
        pass
    return path


def pip_toolkit_homes() -> list[Path]:
    """site-packages/nvidia/cu<torch's CUDA major> on sys.path, where one exists."""
    if torch.version.cuda is None:
        return []
    major = torch.version.cuda.split(".")[0]
    homes = []
    for entry in sys.path:
        home = Path(entry or ".") / "nvidia" / f"cu{major}"
        if home.is_dir() and home not in homes:
            homes.append(home)
    return homes


def candidate_homes() -> list[Path]:
    """Toolkit roots to try, in the order of the module's docstring."""
    homes = []
    if os.environ.get("ROI_OPS_NVCC"):
        homes.append(_real_nvcc(Path(os.environ["ROI_OPS_NVCC"])).parent.parent)
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            homes.append(Path(os.environ[var]))
    homes += pip_toolkit_homes()
    on_path = shutil.which("nvcc")
    if on_path:
        homes.append(_real_nvcc(Path(on_path)).parent.parent)
    homes.append(Path("/usr/local/cuda"))
    return homes


def find_toolkit() -> Path | None:
    """The root of the first toolkit with an nvcc, or None."""
    for home in candidate_homes():
        if _nvcc_in(home) is not None:
            return home
    return None


def nvcc_of(home: Path) -> Path:
    nvcc = _nvcc_in(home)
    if nvcc is None:
        raise FileNotFoundError(f"no nvcc in {home / 'bin'}")
    return nvcc


def nvcc_version(nvcc: Path) -> tuple[int, int]:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def check_nvcc_major(nvcc: Path, torch_cuda: str | None = None) -> tuple[int, int]:
    """nvcc's (major, minor); raises RuntimeError when its major is not torch's
    (kernels built by another major may not load or run with torch's runtime)."""
    torch_cuda = torch_cuda or torch.version.cuda
    version = nvcc_version(nvcc)
    wanted = int(str(torch_cuda).split(".")[0])
    if version[0] != wanted:
        found = f"CUDA {version[0]}.{version[1]}" if version != (0, 0) else "no version"
        raise RuntimeError(
            f"{nvcc} reports {found}, but this torch was built with CUDA {torch_cuda}; the "
            f"kernels need an nvcc of CUDA {wanted}.x. Set CUDA_HOME to such a toolkit, or "
            f"pip install 'cuda-toolkit[nvcc,cccl]=={wanted}.*'")
    return version


def find_nvcc() -> Path | None:
    """The nvcc of the first toolkit whose CUDA major is torch's and whose
    version is at least torch's, or None."""
    if torch.version.cuda is None:
        return None
    wanted = tuple(int(v) for v in torch.version.cuda.split(".")[:2])
    for home in candidate_homes():
        nvcc = _nvcc_in(home)
        if nvcc is not None and nvcc_version(nvcc)[0] == wanted[0] \
                and nvcc_version(nvcc) >= wanted:
            return nvcc
    return None


def library_dir(home: Path) -> Path:
    """lib64 if the toolkit has it, else lib (the pip layout), as cpp_extension chooses."""
    return home / "lib64" if (home / "lib64").is_dir() else home / "lib"


def cudart_link_dir(home: Path, build_dir: Path) -> Path | None:
    """None when the toolkit has libcudart.so; else a directory in build_dir
    holding libcudart.so -> the toolkit's libcudart.so.<major>, to put on the
    link line. Raises FileNotFoundError when the toolkit has neither."""
    lib = library_dir(home)
    if (lib / "libcudart.so").exists() or sys.platform == "win32":
        return None
    versioned = sorted(lib.glob("libcudart.so.[0-9]*"), key=lambda p: len(p.name))
    if not versioned:
        raise FileNotFoundError(
            f"the CUDA toolkit in {home} has no CUDA runtime to link (no libcudart.so or "
            f"libcudart.so.<major> in {lib})")
    link_dir = build_dir / "cudart-link"
    link_dir.mkdir(parents=True, exist_ok=True)
    link = link_dir / "libcudart.so"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(versioned[0])
    return link_dir


def default_arch_list() -> str | None:
    """TORCH_CUDA_ARCH_LIST for a build with no GPU visible and none set:
    torch's own architectures, e.g. '7.5;8.0;9.0;12.0+PTX'. None when a GPU
    is visible or the variable is set (cpp_extension then decides as usual)."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST") or torch.cuda.device_count() > 0:
        return None
    arches = []
    for arch in torch.cuda.get_arch_list():
        match = re.fullmatch(r"sm_(\d+)(\d)a?", arch)
        if match:
            version = f"{match.group(1)}.{match.group(2)}"
            if version not in arches:
                arches.append(version)
    if not arches:
        raise RuntimeError(
            "no GPU is visible and this torch lists no architectures "
            f"({torch.cuda.get_arch_list()}): set TORCH_CUDA_ARCH_LIST, e.g. 9.0")
    return ";".join(arches[:-1] + [arches[-1] + "+PTX"])
