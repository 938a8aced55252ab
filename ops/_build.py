"""Builds and loads the C++/CUDA kernels on first use.

The sources are compiled once with ``torch.utils.cpp_extension.load`` (ninja)
into torch's extension cache (``TORCH_EXTENSIONS_DIR``, by default
``~/.cache/torch_extensions``) and rebuilt only when a source or a flag
changes. The CUDA kernels are compiled in when a GPU and a CUDA compiler are
both present; every machine gets the CPU kernels.

Environment:
    ROI_OPS_CUDA=0|1   force the CUDA kernels off / on (default: automatic)
    ROI_OPS_VERBOSE=1  show the compiler's output
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import torch

_CSRC = Path(__file__).resolve().parent / "csrc"
_LOCK = threading.Lock()
_loaded = False
_with_cuda = False

log = logging.getLogger(__name__)


def _cpp_extension():
    """torch.utils.cpp_extension, imported without its warning that a
    CPU-only machine has no CUDA runtime (expected here, not a problem)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import torch.utils.cpp_extension as cpp_extension
    finally:
        logger.setLevel(level)
    return cpp_extension


def cpu_sources() -> list[Path]:
    return [_CSRC / "ops.cpp", _CSRC / "checks.cpp", *sorted((_CSRC / "cpu").glob("*.cpp"))]


def cuda_sources() -> list[Path]:
    return sorted((_CSRC / "cuda").glob("*.cu"))


def cxx_flags() -> list[str]:
    # -fopenmp: at::parallel_for is inlined into the extension; without it the
    # kernels would run on one thread.
    return ["-O3", "-fopenmp"]


def nvcc_flags() -> list[str]:
    return ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]


def _cuda_wanted() -> bool:
    choice = os.environ.get("ROI_OPS_CUDA", "").strip()
    if choice not in ("", "0", "1"):
        raise ValueError(f"ROI_OPS_CUDA must be 0, 1 or unset, got {choice!r}")
    if choice == "0" or torch.version.cuda is None:
        if choice == "1":
            raise RuntimeError("ROI_OPS_CUDA=1 but this torch build has no CUDA support")
        return False
    cuda_home = _cpp_extension().CUDA_HOME
    if choice == "1":
        if cuda_home is None:
            raise RuntimeError("ROI_OPS_CUDA=1 but no CUDA toolkit was found (set CUDA_HOME)")
        return True
    if not torch.cuda.is_available():
        return False
    if cuda_home is None:
        log.warning("roi_ops: a GPU is present but no CUDA toolkit was found (set CUDA_HOME); "
                    "building the CPU kernels only")
        return False
    return True


def load() -> bool:
    """Compiles (first time) and loads the kernels; returns whether CUDA is in."""
    global _loaded, _with_cuda
    with _LOCK:
        if _loaded:
            return _with_cuda
        load_extension = _cpp_extension().load

        with_cuda = _cuda_wanted()
        sources = cpu_sources() + (cuda_sources() if with_cuda else [])
        verbose = os.environ.get("ROI_OPS_VERBOSE", "") == "1"
        log.info("roi_ops: loading the %s kernels (compiled on first use, then cached)",
                 "CPU and CUDA" if with_cuda else "CPU")
        load_extension(
            name="roi_ops_cuda" if with_cuda else "roi_ops_cpu",
            sources=[str(s) for s in sources],
            extra_cflags=cxx_flags() + (["-DROI_OPS_WITH_CUDA"] if with_cuda else []),
            extra_cuda_cflags=nvcc_flags(),
            extra_ldflags=["-fopenmp"],
            with_cuda=with_cuda,
            is_python_module=False,
            verbose=verbose,
        )
        _loaded, _with_cuda = True, with_cuda
        return with_cuda


def find_nvcc() -> Path | None:
    """An nvcc whose CUDA version is at least torch's: $ROI_OPS_NVCC, the one
    pip's cuda-toolkit[nvcc] installs (nvidia/cuXX/bin), or $CUDA_HOME's."""
    if torch.version.cuda is None:
        return None
    candidates = []
    if os.environ.get("ROI_OPS_NVCC"):
        candidates.append(Path(os.environ["ROI_OPS_NVCC"]))
    major = torch.version.cuda.split(".")[0]
    for entry in sys.path:
        candidates.append(Path(entry) / "nvidia" / f"cu{major}" / "bin" / "nvcc")
    cuda_home = _cpp_extension().CUDA_HOME
    if cuda_home:
        candidates.append(Path(cuda_home) / "bin" / "nvcc")
    wanted = tuple(int(v) for v in torch.version.cuda.split(".")[:2])
    for nvcc in candidates:
        if nvcc.is_file() and nvcc_version(nvcc) >= wanted:
            return nvcc
    return None


def nvcc_version(nvcc: Path) -> tuple[int, int]:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _cxx_standard() -> str:
    aten = Path(torch.__file__).parent / "include" / "ATen" / "ATen.h"
    return "c++20" if "C++20 or later" in aten.read_text() else "c++17"


def compile_cuda_sources(nvcc: Path, out_dir: Path, arch: str = "90") -> list[Path]:
    """Compiles (no link) every CUDA source with the flags of the real build,
    so a CUDA source that does not compile is caught without a GPU."""
    cpp_extension = _cpp_extension()

    cuda_home = nvcc.parent.parent
    includes = [*cpp_extension.include_paths(), str(cuda_home / "include"), str(_CSRC)]
    jobs = []
    for source in cuda_sources():  # in parallel: nvcc is single-threaded
        obj = out_dir / (source.stem + ".o")
        cmd = [str(nvcc), "-c", str(source), "-o", str(obj), f"-std={_cxx_standard()}",
               "-Xcompiler", "-fPIC", f"-gencode=arch=compute_{arch},code=sm_{arch}",
               "-DTORCH_EXTENSION_NAME=roi_ops_cuda", "-DTORCH_API_INCLUDE_EXTENSION_H",
               *cpp_extension.COMMON_NVCC_FLAGS, *nvcc_flags(), *(f"-I{p}" for p in includes)]
        jobs.append((source, obj, subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    failures = []
    for source, _, proc in jobs:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"nvcc failed on {source.name}:\n{output}")
    if failures:
        raise RuntimeError("\n".join(failures))
    return [obj for _, obj, _ in jobs]
