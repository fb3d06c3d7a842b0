"""A ggml thread pool of our own for a llama.cpp context.

llama.cpp built without OpenMP (as Ollama and Docker Model Runner build it, and as the Makefile
builds our wheel) runs the CPU graph on a ggml thread pool. When the context has none attached,
ggml creates and joins a fresh pool, threads included, for every graph it computes, i.e. every
decode step; llama-server avoids that by attaching one pool at start-up, and so do we. With
OpenMP, the pool only carries settings (OpenMP owns the threads) and attaching it is harmless.

``poll`` is how long the pool's idle workers busy-wait for the next graph before sleeping (ggml's
0-100 scale; llama-server's default 50 spins through the whole gap between decode steps). A
worker spinning between steps takes a core from the Python work of that gap (sampling, handing
tokens to the event loop, HTTP) and from other loaded models; the engine does not poll (50
measured within the noise of 0: BENCHMARKS.md).

llama-cpp-python has no bindings for these calls: they are declared here with ctypes, on the
library llama-cpp-python loaded (its dependencies, libggml-base and libggml-cpu, resolve through
it). A build without them (a non-CPU backend loaded dynamically) simply gets no pool.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path
from typing import Any

from llama_cpp import llama_cpp as _bindings

log = logging.getLogger(__name__)

# struct ggml_threadpool_params: bool cpumask[GGML_MAX_N_THREADS = 512]; int n_threads;
# enum prio; uint32 poll; bool strict_cpu; bool paused. Filled by ggml_threadpool_params_init,
# so only these fields are touched from Python.
_MAX_THREADS = 512


class _Params(ctypes.Structure):
    _fields_ = [
        ("cpumask", ctypes.c_bool * _MAX_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


@functools.cache
def _functions() -> dict[str, Any] | None:
    lib: Any = _bindings._lib
    try:
        fns = {
            "init": lib.ggml_threadpool_params_init,
            "new": lib.ggml_threadpool_new,
            "free": lib.ggml_threadpool_free,
            "attach": lib.llama_attach_threadpool,
            "detach": lib.llama_detach_threadpool,
        }
    except AttributeError:
        return None
    fns["init"].argtypes = [ctypes.POINTER(_Params), ctypes.c_int]
    fns["init"].restype = None
    fns["new"].argtypes = [ctypes.POINTER(_Params)]
    fns["new"].restype = ctypes.c_void_p
    fns["free"].argtypes = [ctypes.c_void_p]
    fns["free"].restype = None
    fns["attach"].argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    fns["attach"].restype = None
    fns["detach"].argtypes = [ctypes.c_void_p]
    fns["detach"].restype = None
    return fns


@functools.cache
def uses_openmp() -> bool:
    """Whether the loaded llama.cpp runs its CPU threads on OpenMP (libgomp/libomp mapped)."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return False
    return "libgomp" in maps or "libomp" in maps or "libiomp" in maps


class ThreadPool:
    """One ggml thread pool attached to ``ctx`` for single-token and batch steps alike; free it
    with ``close`` after the context is freed (or detach first)."""

    def __init__(self, ctx: Any, n_threads: int, poll: int) -> None:
        self._fns = _functions()
        self._pool: int | None = None
        self._ctx: Any = None
        if self._fns is None:
            log.debug("no ggml thread pool API in this llama.cpp build")
            return
        params = _Params()
        self._fns["init"](ctypes.byref(params), n_threads)
        params.poll = max(0, min(100, poll))
        pool = self._fns["new"](ctypes.byref(params))
        if not pool:
            log.warning("could not create a ggml thread pool of %d threads", n_threads)
            return
        self._pool = pool
        self._ctx = ctx
        self._fns["attach"](ctx, pool, None)  # NULL batch pool: the same pool for batches

    @property
    def attached(self) -> bool:
        return self._pool is not None

    def detach(self) -> None:
        if self._fns is not None and self._ctx is not None:
            self._fns["detach"](self._ctx)
            self._ctx = None

    def close(self) -> None:
        """Free the pool (its context must be freed or detached already)."""
        self._ctx = None
        pool, self._pool = self._pool, None
        if self._fns is not None and pool:
            self._fns["free"](pool)
