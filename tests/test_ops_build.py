"""The build: the CUDA sources compile (no GPU needed; once, for sm_90,
H100/H200), nothing is compiled on import, what is missing is named, and the
cache follows the sources."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ops import _build


@pytest.mark.slow  # CI builds and loads them: benchmarks/gpu_check.sh --dry-run
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
    done = _python("import ops, detector, detector.visualization.report, ops.explain, "
                   "ops.reference\n"
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


def test_a_build_without_openmp_is_redone_once_the_compiler_has_it(tmp_path, monkeypatch):
    """A library built while the compiler lacked OpenMP (one thread) is kept
    apart and used only while OpenMP is still missing; once the compiler
    accepts it, the next process builds the multi-threaded library and later
    processes load that one."""
    monkeypatch.setenv("ROI_OPS_CACHE", str(tmp_path / "cache"))
    built, loaded, omp = [], [], [None]

    def fake_build(with_cuda, target):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"library")
        built.append(target.name)

    monkeypatch.setattr(_build, "_build", fake_build)
    monkeypatch.setattr(_build, "openmp_flags", lambda: omp[0])
    monkeypatch.setattr(torch.ops, "load_library", lambda path: loaded.append(Path(path).name))
    monkeypatch.setenv("ROI_OPS_CUDA", "0")

    def new_process():
        monkeypatch.setattr(_build, "_loaded", None)
        _build.load()

    library = _build.cached_library(False)
    one_thread = _build.single_threaded(library).name
    new_process()  # no OpenMP: the one-thread build
    new_process()  # still none: that build is loaded
    assert built == [one_thread] and loaded == [one_thread]
    omp[0] = (("-fopenmp",), ("-fopenmp",))  # e.g. libomp installed since
    new_process()
    new_process()
    assert built == [one_thread, library.name] and loaded == [one_thread, library.name]


@pytest.mark.skipif(sys.platform != "linux", reason="gcc/clang on Linux")
def test_openmp_flags_found_here():
    """This machine's compiler takes OpenMP, so the CPU kernels run on every core."""
    assert _build.openmp_flags() is not None


FIRST_USE = """
import torch, ops
ops.load()
out = ops.roi_align(torch.ones(1, 2, 8, 8), torch.tensor([[0., 0., 0., 7., 7.]]), 2,
                    sampling_ratio=2)
assert torch.allclose(out, torch.ones(1, 2, 2, 2)), out
print("ran")
"""


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="the build lock is POSIX flock")
def test_two_processes_on_a_machine_with_no_build(tmp_path):
    """Two processes (e.g. two runs of a parallel sweep) that need the kernels at
    once on a machine with no build yet: one compiles, the other waits for it
    and loads the same library; both run an operator."""
    cache = tmp_path / "cache"
    environ = {**os.environ, "ROI_OPS_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_USE], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=environ)
             for _ in range(2)]
    done = [proc.communicate(timeout=900) for proc in procs]
    for proc, (out, err) in zip(procs, done):
        assert proc.returncode == 0, err
        assert out.strip() == "ran"
    assert sum("compiling the ROI operators" in err for _, err in done) == 1
    libraries = [p for p in cache.iterdir() if p.suffix in (".so", ".dylib", ".pyd")]
    assert len(libraries) == 1, sorted(p.name for p in cache.iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux")
                    or not all(shutil.which(t) for t in ("g++", "nm", "readelf")),
                    reason="the runtime link flags are for gcc on Linux (binutils to read them)")
def test_the_shared_cxx_runtime_is_linked_when_the_compiler_links_it_statically(tmp_path):
    """A compiler wrapped to add -static-libstdc++ (a GPU image's $CXX was) put a
    private copy of the C++ runtime into the library, and formatting the first
    error message crashed the process there. With runtime_ldflags() the library
    needs libstdc++.so.6 and holds no copy of its streams."""
    wrapper = tmp_path / "g++"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("g++")} "$@" -static-libstdc++\n')
    wrapper.chmod(0o755)
    source = tmp_path / "lib.cpp"
    source.write_text('#include <sstream>\n#include <string>\n'
                      'std::string describe(long n) { std::ostringstream s; s << n; return s.str(); }\n')

    def build(flags: list[str]) -> Path:
        library = tmp_path / f"lib{len(flags)}.so"
        # the flags after the objects, as the build's link line has them
        subprocess.run([str(wrapper), "-shared", "-fPIC", str(source), *flags, "-o", str(library)],
                       check=True, capture_output=True)
        return library

    def defines_streams(library: Path) -> bool:
        nm = subprocess.run(["nm", "-C", "--defined-only", str(library)], capture_output=True,
                            text=True, check=True).stdout
        return "std::ostream::_M_insert<long>(long)" in nm  # the runtime's own, never inline

    static, shared = build([]), build(_build.runtime_ldflags())
    assert defines_streams(static), "the wrapper did not link the runtime statically here"
    assert not defines_streams(shared)
    dynamic = subprocess.run(["readelf", "-d", str(shared)], capture_output=True, text=True,
                             check=True)
    assert "libstdc++.so.6" in dynamic.stdout
