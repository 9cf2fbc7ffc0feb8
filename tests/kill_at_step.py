"""Run ``python -m hftransfer.train`` that SIGKILLs itself when training reaches a given step.

Used by the kill-and-resume test: ``python tests/kill_at_step.py STEP [train flags ...]``. The kill is a real
SIGKILL (no cleanup, no atexit, buffers lost), delivered between two optimizer steps like a pre-empted machine.
"""

import os
import signal
import sys

from transformers import TrainerCallback

import hftransfer.engine.trainer
import hftransfer.training.recipe


class KillAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    step, argv = int(sys.argv[1]), sys.argv[2:]
    base_init = hftransfer.engine.trainer.TransferTrainer.__init__

    def init_with_kill(self, *args, **kwargs):
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), KillAtStep(step)]
        base_init(self, *args, **kwargs)

    hftransfer.engine.trainer.TransferTrainer.__init__ = init_with_kill
    sys.exit(hftransfer.training.recipe.main(argv))
