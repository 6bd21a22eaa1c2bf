"""Training progress a person can follow: rich bars on a terminal, plain lines in a log file.

Under CI or `ma-train run ... > train.log` the rich bars draw nothing useful, and a 20-minute
stage showed no sign of life; `PlainProgress` prints one line per logging step instead: stage,
step of total, loss, learning rate, seconds per step and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from transformers import TrainerCallback


class PlainProgress(TrainerCallback):
    """One line per `logging_steps` (and one at the end), prefixed by the stage's name, from the
    main process only."""

    def __init__(self, stage: str, stream: TextIO | None = None) -> None:
        self.stage = stage
        self.stream = stream or sys.stderr
        self.started = 0.0
        self.first_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()
        self.first_step = state.global_step  # > 0 when resumed
        self._line(state, f"started: {state.max_steps} steps" + (f", resumed at {state.global_step}" if state.global_step else ""))

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if "loss" not in logs:
            return
        done = state.global_step - self.first_step
        per_step = (time.perf_counter() - self.started) / max(done, 1)
        left = per_step * (state.max_steps - state.global_step)
        self._line(state, f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f} "
                   f"lr {logs.get('learning_rate', 0):.2e} {per_step:.1f} s/step, ~{left / 60:.0f} min left")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._line(state, f"done: {state.global_step} steps in {(time.perf_counter() - self.started) / 60:.1f} min")

    def _line(self, state: Any, text: str) -> None:
        if state.is_world_process_zero:  # one line per step, not one per process
            print(f"[{self.stage}] {text}", file=self.stream, flush=True)


def on_terminal(console: Any = None) -> bool:
    return console.is_terminal if console is not None else sys.stderr.isatty()


def quiet_library_bars(console: Any = None) -> None:
    """Off the libraries' own bars (dataset preparation, weight loading) when not on a terminal:
    in a log they are noise around the step lines."""
    if not on_terminal(console):
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def progress_callback(stage: str, console: Any = None) -> TrainerCallback:
    """Rich bars when the console is a terminal, plain lines otherwise."""
    if on_terminal(console):
        from trl.trainer.callbacks import RichProgressCallback

        return RichProgressCallback()
    return PlainProgress(stage)
