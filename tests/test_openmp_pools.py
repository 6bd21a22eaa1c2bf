"""No idle OpenMP pool is left in a thread that is not decoding (`backends/openmp.py`).

libgomp keeps a pool of worker threads per thread that ran parallel work; with more pool threads
than cores it puts waiting threads to sleep at every barrier, and a stream decoding in its worker
thread ran at half speed on two cores. These tests count the process's threads (Linux), not time.
"""

from __future__ import annotations

import os
import time

import pytest

from metaaligner_chain.backends import openmp
from metaaligner_chain.backends.base import GenerationSettings
from metaaligner_chain.backends.llamacpp import LlamaCppBackend
from metaaligner_chain.models.defaults import default_gguf_path
from metaaligner_chain.prompt import build_prompt

MODEL = str(default_gguf_path())
PROMPT = build_prompt("How do I bake bread?", "Mix flour and water, then bake it.", ["helpfulness"])
SETTINGS = GenerationSettings(max_new_tokens=6)

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/task"),
                                reason="counts threads in /proc")


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def settled(at_most: int) -> int:
    """The thread count once a finished stream's worker thread has exited (a guard, not a timing
    check: it waits up to 30 s)."""
    deadline = time.monotonic() + 30
    while threads() > at_most and time.monotonic() < deadline:
        time.sleep(0.01)
    return threads()


@pytest.fixture(scope="module")
def backend() -> LlamaCppBackend:
    backend = LlamaCppBackend(MODEL, n_threads=2)
    backend.generate([PROMPT], SETTINGS)
    if not openmp.loaded_runtimes():
        pytest.skip("this llama.cpp build does not run on libgomp")
    yield backend
    backend.close()


def test_a_block_on_the_model_lets_its_threads_pool_go(backend):
    openmp.release_idle_pool()  # this thread starts with no pool
    before = threads()
    with backend.locked_llama() as llama:
        llama.reset()
        llama.eval(llama.tokenize(b"Some parallel work for the pool"))
        assert threads() == before + 1  # two threads: the caller and one pool thread
    assert threads() == before


@pytest.mark.parametrize("call", ["generate", "score", "stream"])
def test_calls_leave_no_idle_pool_behind(backend, call):
    openmp.release_idle_pool()
    before = threads()
    if call == "generate":
        assert backend.generate([PROMPT], SETTINGS)[0].text
    elif call == "score":
        assert backend.score(PROMPT, ["Mix flour and water."])[0] < 0
    else:
        assert "".join(backend.stream(PROMPT, SETTINGS))
    assert settled(before) == before


def test_a_stream_frees_the_pool_its_callers_thread_kept(backend):
    """A policy model run in this thread keeps a pool; the stream's worker must not decode
    beside it."""
    import llama_cpp

    policy = llama_cpp.Llama(MODEL, n_ctx=256, n_threads=2, verbose=False)
    try:
        openmp.release_idle_pool()
        before = threads()
        policy.eval(policy.tokenize(b"The policy answers in this thread"))
        assert threads() == before + 1  # the policy's pool stays after its work
        want = backend.generate([PROMPT], SETTINGS)[0].text  # (releases this thread's pool too)
        policy.eval(policy.tokenize(b" and answers again"))
        assert threads() == before + 1
        assert "".join(backend.stream(PROMPT, SETTINGS)) == want
        assert settled(before) == before
    finally:
        policy.close()


def test_release_frees_a_torch_pool_too():
    torch = pytest.importorskip("torch")
    if torch.get_num_threads() < 2:
        pytest.skip("torch runs one thread here")
    a = torch.randn(512, 512)
    openmp.release_idle_pool()
    before = threads()
    a @ a  # noqa: B018  (parallel work in this thread)
    grown = threads()
    if grown == before or not openmp.loaded_runtimes():
        pytest.skip("torch's parallel work here does not run on libgomp")
    assert openmp.release_idle_pool() >= 1
    assert threads() < grown


@pytest.mark.parametrize("llvm", [False, True])
def test_only_gnu_libgomp_is_paused(tmp_path, llvm):
    """LLVM's libomp, installed under libgomp's name on some systems, pauses the whole process:
    it is left alone. Two real shared libraries, built here, stand for the two runtimes."""
    import shutil
    import subprocess

    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in runtimes")
    source = tmp_path / "runtime.c"
    source.write_text("int omp_pause_resource_all(int kind) { return kind - 1; }\n"
                      + ("void __kmpc_fork_call(void) {}\n" if llvm else ""))
    library = tmp_path / f"libgomp-{'llvm' if llvm else 'gnu'}.so.1"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    runtime = openmp._runtime(str(library))
    assert (runtime is None) == llvm
    if not llvm:
        assert runtime.omp_pause_resource_all(openmp.PAUSE_SOFT) == 0
