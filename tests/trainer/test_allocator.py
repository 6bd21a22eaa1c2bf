"""`ma-train`'s training verbs re-execute themselves with tcmalloc/jemalloc preloaded."""

import os
import subprocess
import sys

import pytest

from trainer.train.allocator import ENV, find_allocator

PRINT_PRELOAD = (
    "import os; from trainer.train.allocator import reexec_with_fast_allocator; "
    "reexec_with_fast_allocator(); print(os.environ.get('LD_PRELOAD', ''))"
)


def run_child(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ENV)}
    done = subprocess.run([sys.executable, "-c", PRINT_PRELOAD], env={**clean, **env},
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_system_opts_out_and_a_wrong_name_is_named():
    assert find_allocator("system") is None
    with pytest.raises(ValueError, match=r"MA_TRAIN_ALLOCATOR='tcmaloc'.*auto, system, tcmalloc, jemalloc"):
        find_allocator("tcmaloc")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD is Linux's")
def test_the_process_comes_back_with_the_allocator_preloaded():
    library = find_allocator("auto")
    if library is None:
        pytest.skip("no tcmalloc/jemalloc installed (apt install libtcmalloc-minimal4)")
    assert run_child() == library
    assert run_child(**{ENV: "system"}) == ""
    # already preloaded (by the user, or by the first exec): left as it is, no second exec
    assert run_child(LD_PRELOAD=library) == library
