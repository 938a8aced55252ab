"""Builds and loads the C++/CUDA kernels on first use (never on import).

The first call that needs a kernel compiles the sources once for this machine
(about 30 s on 2 cores, announced on stderr) with ``torch.utils.cpp_extension``
(ninja). The library is kept in a cache keyed by a hash of the sources, the
flags and the torch build, so any later process, from any checkout or
environment with the same torch, loads it in milliseconds; a changed source or
another torch gives another key and one more build.

Environment:
    ROI_OPS_CACHE=DIR  where built libraries are kept
                       (default: $XDG_CACHE_HOME/roi_ops, else ~/.cache/roi_ops)
    ROI_OPS_CUDA=0|1   force the CUDA kernels off / on (default: automatic);
                       ROI_OPS_CUDA=1 builds them with no GPU present too (they load
                       without one: ops.has_cuda_kernels())
    TORCH_CUDA_ARCH_LIST  GPU architectures to build for (default: the visible
                       GPUs', else every one this torch was built for)
    ROI_OPS_VERBOSE=1  show the compiler's output
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from . import _cuda_toolkit
from ._cuda_toolkit import find_nvcc, nvcc_version  # noqa: F401 (the compile check's)

_CSRC = Path(__file__).resolve().parent / "csrc"
_LOCK = threading.Lock()
_loaded: bool | None = None  # None: not loaded; else whether the CUDA kernels are in

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """The kernels cannot be built on this machine; the message says what is
    missing and how to fix it."""


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
    return [_CSRC / "ops.cpp", _CSRC / "checks.cpp", _CSRC / "nms.cpp",
            *sorted((_CSRC / "cpu").glob("*.cpp"))]


def cuda_sources() -> list[Path]:
    return sorted((_CSRC / "cuda").glob("*.cu"))


def _all_sources() -> list[Path]:
    """Every file the build reads (headers too), for the cache key."""
    return sorted(p for p in _CSRC.rglob("*") if p.suffix in (".h", ".cpp", ".cu", ".cuh"))


def cache_dir() -> Path:
    if os.environ.get("ROI_OPS_CACHE"):
        return Path(os.environ["ROI_OPS_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "roi_ops"


# --- compiler flags ---------------------------------------------------------------------

_OMP_PROBE = "#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n"


def _compiler() -> str:
    return _cpp_extension().get_cxx_compiler()


def _openmp_candidates() -> list[tuple[list[str], list[str]]]:
    """(compile flags, link flags) to try, in order, for the C++ compiler."""
    if sys.platform == "win32":
        return [(["/openmp"], [])]
    torch_lib = str(Path(torch.__file__).parent / "lib")
    candidates = [(["-fopenmp"], ["-fopenmp"])]  # gcc; clang with libomp installed
    if sys.platform == "darwin":  # Apple clang: no -fopenmp driver flag; libomp
        for prefix in ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"):
            candidates.append((["-Xpreprocessor", "-fopenmp", f"-I{prefix}/include"],
                               [f"-L{prefix}/lib", "-lomp"]))
        candidates.append((["-Xpreprocessor", "-fopenmp"], [f"-L{torch_lib}", "-lomp"]))
    return candidates


@functools.cache
def openmp_flags() -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """The OpenMP flags this compiler accepts (tried on a small program), or
    None: then at::parallel_for is compiled without OpenMP and the kernels run
    on one thread."""
    if sys.platform == "win32":  # MSVC always has /openmp
        return ("/openmp",), ()
    compiler = _compiler()
    with tempfile.TemporaryDirectory(prefix="roi_ops_omp_") as tmp:
        probe = Path(tmp) / "probe.cpp"
        probe.write_text(_OMP_PROBE)
        for cflags, ldflags in _openmp_candidates():
            cmd = [compiler, *cflags, str(probe), "-o", str(Path(tmp) / "probe"), *ldflags]
            if subprocess.run(cmd, capture_output=True).returncode == 0:
                return tuple(cflags), tuple(ldflags)
    return None


def cxx_flags() -> list[str]:
    """Compile flags of the C++ sources (the OpenMP ones are chosen per compiler
    at build time by openmp_flags)."""
    return ["/O2"] if sys.platform == "win32" else ["-O3"]


def runtime_ldflags() -> list[str]:
    """Links the shared C++ runtime (libstdc++.so), which torch's libraries use,
    ahead of anything the compiler adds. A compiler set up to link it statically
    (a g++ wrapper with -static-libstdc++, as one GPU image's $CXX is) otherwise
    puts a second, never initialised copy of the runtime into the library, and
    the first error message it formats (std::ostream << a number) crashes the
    process with a segmentation fault."""
    if not sys.platform.startswith("linux"):
        return []
    return ["-Wl,--push-state,-Bdynamic,-lstdc++,--pop-state"]


def nvcc_flags() -> list[str]:
    return ["-O3", "--expt-relaxed-constexpr", "-lineinfo"]


# --- what to build ----------------------------------------------------------------------

def _cuda_wanted() -> bool:
    choice = os.environ.get("ROI_OPS_CUDA", "").strip()
    if choice not in ("", "0", "1"):
        raise ValueError(f"ROI_OPS_CUDA must be 0, 1 or unset, got {choice!r}")
    if choice == "0" or torch.version.cuda is None:
        if choice == "1":
            raise BuildError("ROI_OPS_CUDA=1 but this torch build has no CUDA support")
        return False
    if choice != "1" and not torch.cuda.is_available():
        return False
    if _cuda_toolkit.find_toolkit() is None:
        where = ("$CUDA_HOME, $CUDA_PATH, site-packages/nvidia/cu"
                 f"{torch.version.cuda.split('.')[0]}, nvcc on PATH, /usr/local/cuda")
        if choice == "1":
            raise BuildError(f"ROI_OPS_CUDA=1 but no CUDA toolkit was found (looked in {where}); "
                             "set CUDA_HOME, or pip install 'cuda-toolkit[nvcc,cccl]'")
        log.warning("roi_ops: a GPU is present but no CUDA toolkit was found (looked in %s); "
                    "building the CPU kernels only", where)
        return False
    return True


def build_key(with_cuda: bool) -> str:
    """What the built library depends on: sources, flags, torch, Python, machine."""
    digest = hashlib.sha256()
    for path in _all_sources():
        digest.update(path.relative_to(_CSRC).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    parts = [torch.__version__, str(torch.version.git_version), str(torch.version.cuda),
             sys.version.split()[0], platform.machine(), sys.platform,
             os.environ.get("CXX", ""), " ".join(cxx_flags()), " ".join(runtime_ldflags()),
             " ".join(nvcc_flags()) if with_cuda else "", str(with_cuda)]
    if with_cuda:
        home = _cuda_toolkit.find_toolkit()
        parts += [os.environ.get("TORCH_CUDA_ARCH_LIST", ""), str(home),
                  str(_cuda_toolkit.default_arch_list())]
        if torch.cuda.is_available():
            parts += [".".join(map(str, torch.cuda.get_device_capability(i)))
                      for i in range(torch.cuda.device_count())]
    digest.update("\0".join(parts).encode())
    return digest.hexdigest()[:16]


def single_threaded(library: Path) -> Path:
    """Where the build of ``library`` without OpenMP is kept: apart, so that a
    compiler that accepts OpenMP later (macOS after brew install libomp) gets
    the multi-threaded build instead of the cached one-thread library."""
    return library.with_name(f"{library.stem}-no-openmp{library.suffix}")


def _library_name(with_cuda: bool) -> str:
    return "roi_ops_cuda" if with_cuda else "roi_ops_cpu"


def _library_suffix() -> str:
    return ".pyd" if sys.platform == "win32" else ".so"


def cached_library(with_cuda: bool) -> Path:
    """Where the library for this machine's key is kept (it may not exist yet)."""
    name = _library_name(with_cuda)
    return cache_dir() / f"{name}-{build_key(with_cuda)}{_library_suffix()}"


# --- building ---------------------------------------------------------------------------

def preflight() -> None:
    """Raises BuildError naming what the build needs and is missing."""
    cpp_extension = _cpp_extension()
    compiler = _compiler()
    if shutil.which(compiler) is None:
        hint = {"darwin": "xcode-select --install",
                "win32": "install Visual Studio's C++ build tools and start from their "
                         "developer prompt"}.get(sys.platform,
                                                 "e.g. apt install g++ / dnf install gcc-c++")
        raise BuildError(
            f"roi_ops: the ROI operators are compiled on first use, and no C++ compiler was "
            f"found ({compiler!r} is not on PATH; set CXX to use another). Fix: {hint}.")
    if not cpp_extension.is_ninja_available():
        raise BuildError("roi_ops: the ROI operators are compiled on first use with ninja, "
                         "which is not installed. Fix: pip install ninja")


@contextlib.contextmanager
def _exclusive(path: Path):
    """One builder at a time across processes (a file lock; none on Windows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: concurrent first builds just repeat the work
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(with_cuda: bool, target: Path) -> None:
    """Compiles the library, loads it into this process (cpp_extension.load
    does) and leaves a copy at ``target`` (written whole or not at all) for
    later processes."""
    preflight()
    cpp_extension = _cpp_extension()
    omp = openmp_flags()
    if omp is None:
        log.warning("roi_ops: %s does not accept OpenMP, so the CPU kernels will run on one "
                    "thread (on macOS: brew install libomp)", _compiler())
    omp_cflags, omp_ldflags = omp or ((), ())
    name = _library_name(with_cuda)
    build_dir = cache_dir() / f"build-{name}"
    build_dir.mkdir(parents=True, exist_ok=True)
    cuda = _cuda_build_settings(build_dir) if with_cuda else _CudaSettings()
    started = time.perf_counter()
    print(f"roi_ops: compiling the ROI operators for this machine, once "
          f"(~{'2 min' if with_cuda else '30 s'}; kept in {cache_dir()})",
          file=sys.stderr, flush=True)
    try:
        with cuda.applied(cpp_extension):
            cpp_extension.load(
                name=name,
                sources=[str(s) for s in cpu_sources() + (cuda_sources() if with_cuda else [])],
                extra_cflags=cxx_flags() + list(omp_cflags)
                + (["-DROI_OPS_WITH_CUDA"] if with_cuda else []),
                extra_cuda_cflags=nvcc_flags(),
                extra_ldflags=runtime_ldflags() + list(omp_ldflags) + cuda.ldflags,
                extra_include_paths=cuda.include_paths,
                with_cuda=with_cuda,
                build_directory=str(build_dir),
                is_python_module=False,
                verbose=os.environ.get("ROI_OPS_VERBOSE", "") == "1",
            )
    except (RuntimeError, OSError, subprocess.CalledProcessError) as error:
        raise BuildError(
            f"roi_ops: compiling the ROI operators failed with {_compiler()} in {build_dir} "
            f"(run again with ROI_OPS_VERBOSE=1 for the compiler's output): {error}") from error
    built = build_dir / f"{name}{_library_suffix()}"
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.copyfile(built, partial)
    os.replace(partial, target)
    print(f"roi_ops: done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


class _CudaSettings:
    """What a CUDA build adds to cpp_extension's own: the toolkit (set as
    cpp_extension's CUDA_HOME while building), link and include flags, and the
    architecture list when no GPU is visible. Empty for a CPU build."""

    def __init__(self, home: Path | None = None, ldflags: list[str] | None = None,
                 include_paths: list[str] | None = None, arch_list: str | None = None):
        self.home, self.arch_list = home, arch_list
        self.ldflags, self.include_paths = ldflags or [], include_paths or []

    @contextlib.contextmanager
    def applied(self, cpp_extension):
        if self.home is None:
            yield
            return
        saved_home, saved_arch = cpp_extension.CUDA_HOME, os.environ.get("TORCH_CUDA_ARCH_LIST")
        cpp_extension.CUDA_HOME = str(self.home)
        if self.arch_list:
            os.environ["TORCH_CUDA_ARCH_LIST"] = self.arch_list
        try:
            yield
        finally:
            cpp_extension.CUDA_HOME = saved_home
            if self.arch_list:
                if saved_arch is None:
                    os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
                else:
                    os.environ["TORCH_CUDA_ARCH_LIST"] = saved_arch


def _cuda_build_settings(build_dir: Path) -> _CudaSettings:
    """The toolkit checked (nvcc of torch's CUDA major) and the flags it needs;
    BuildError naming the problem otherwise."""
    home = _cuda_toolkit.find_toolkit()
    if home is None:
        raise BuildError("roi_ops: no CUDA toolkit was found; set CUDA_HOME, or "
                         "pip install 'cuda-toolkit[nvcc,cccl]'")
    try:
        version = _cuda_toolkit.check_nvcc_major(_cuda_toolkit.nvcc_of(home))
        link_dir = _cuda_toolkit.cudart_link_dir(home, build_dir)
        arch_list = _cuda_toolkit.default_arch_list()
    except (RuntimeError, OSError) as error:
        raise BuildError(f"roi_ops: cannot build the CUDA kernels: {error}") from error
    # Headers of the CUDA libraries torch's wheel ships (cusparse.h, ...) live in
    # the pip toolkit's include dir, which a system toolkit may lack.
    includes = [str(h / "include") for h in _cuda_toolkit.pip_toolkit_homes()
                if h != home and (h / "include").is_dir()]
    log.info("roi_ops: CUDA %d.%d toolkit in %s, architectures %s", *version, home,
             arch_list or os.environ.get("TORCH_CUDA_ARCH_LIST") or "of the visible GPUs")
    return _CudaSettings(home, [f"-L{link_dir}"] if link_dir else [], includes, arch_list)


def load() -> bool:
    """Loads the kernels, compiling them first if this machine has no build of
    these sources yet; returns whether the CUDA kernels are in. Raises
    BuildError when they cannot be built here."""
    global _loaded
    with _LOCK:
        if _loaded is not None:
            return _loaded
        with_cuda = _cuda_wanted()
        library = cached_library(with_cuda)  # hashes every source: once
        target = _usable_build(library)
        built_here = False
        if target is None:
            with _exclusive(cache_dir() / f"{library.stem}.lock"):
                target = _usable_build(library)  # another process may have built it meanwhile
                if target is None:
                    target = library if openmp_flags() is not None else single_threaded(library)
                    _build(with_cuda, target)
                    built_here = True
        if not built_here:
            log.debug("roi_ops: loading %s", target)
            torch.ops.load_library(str(target))
        _loaded = with_cuda
        return with_cuda


def _usable_build(library: Path) -> Path | None:
    """The cached build to load: ``library`` (with OpenMP), else its one-thread
    build while this compiler still has no OpenMP (probed only then), else None."""
    if library.is_file():
        return library
    single = single_threaded(library)
    if single.is_file() and openmp_flags() is None:
        return single
    return None


def is_loaded() -> bool:
    return _loaded is not None


# --- compiling the CUDA sources without a GPU (tests) ------------------------------------

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
