"""Build the llama-server baselines of ``bench_concurrency`` from the llama.cpp our wheel uses.

The llama.cpp sources come from the llama-cpp-python sdist of the version the Makefile pins
(the vendored copy the runner's wheel is compiled from), so the baseline and the runner run the
same kernels. Two variants, cached under ``~/.cache/modelrunner/llama-server/``:

- ``no-openmp``: ggml's own thread pool (``-DGGML_OPENMP=OFF``), as Ollama and Docker Model
  Runner build llama.cpp: the peer users actually run;
- ``openmp``: llama.cpp's CMake default (OpenMP on), as llama-cpp-python builds by default.

Everything else is llama.cpp's default (``GGML_NATIVE`` on, Release). Standard library only, so
it runs before the virtual environment exists. Builds only the ``llama-server`` target (about
10 minutes on 2 cores the first time; ccache, when installed, shares the objects that do not
depend on OpenMP between the variants).

Run: ``python3 -m bench.build_llama_server [--variant no-openmp|openmp|both]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path.home() / ".cache/modelrunner"
VARIANTS = {"no-openmp": "OFF", "openmp": "ON"}


def pinned_version() -> str:
    """``LLAMA_CPP_VERSION`` of the Makefile: the llama-cpp-python the runner's wheel is."""
    match = re.search(r"^LLAMA_CPP_VERSION\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    if not match:
        raise SystemExit("LLAMA_CPP_VERSION not found in the Makefile")
    return match.group(1)


def server_path(variant: str, version: str | None = None) -> Path:
    """Where the ``variant`` build of llama-server lands."""
    return CACHE / f"llama-server/{version or pinned_version()}-{variant}/bin/llama-server"


def sources(version: str) -> Path:
    """The vendored llama.cpp of the sdist, downloaded and unpacked once."""
    src = CACHE / f"llama-server/src-{version}"
    if (src / "CMakeLists.txt").is_file():
        return src
    sdists = CACHE / "sdist"
    sdist = sdists / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.is_file():
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "-d", str(sdists),
                        f"llama-cpp-python=={version}"], check=True)  # fmt: skip
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    tmp = src.with_name(src.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            if m.name.startswith(prefix):
                m.name = m.name[len(prefix) :]
                members.append(m)
        tar.extractall(tmp, members=members, filter="data")
    tmp.rename(src)
    return src


def build(variant: str, version: str, jobs: int) -> Path:
    out = server_path(variant, version)
    if out.is_file():
        print(f"{variant}: already built at {out}")
        return out
    src = sources(version)
    build_dir = out.parent.parent
    cmake = ["cmake", "-S", str(src), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE=Release",
             f"-DGGML_OPENMP={VARIANTS[variant]}", "-DLLAMA_BUILD_TESTS=OFF",
             "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_OPENSSL=OFF"]  # fmt: skip
    if shutil.which("ninja"):
        cmake += ["-G", "Ninja"]
    subprocess.run(cmake, check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "llama-server",
                    "-j", str(jobs)], check=True)  # fmt: skip
    if not out.is_file():
        raise SystemExit(f"the build did not produce {out}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=[*VARIANTS, "both"], default="both")
    parser.add_argument("--version", default=None, help="llama-cpp-python version (Makefile's)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    version = args.version or pinned_version()
    for variant in VARIANTS if args.variant == "both" else [args.variant]:
        print(build(variant, version, args.jobs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
