"""A bidirectional language model's two directions trained side by side on CPU, one thread each.

The forward and the backward LM share only the embedding, so each direction's forward and
backward pass can run on its own Python thread (torch releases the GIL inside its ops) with half
the process's intra-op threads. At pretrain.yaml's sizes a second intra-op thread gives one
direction 1.3 to 1.4x, while the other direction on the other core nearly doubles the work done
(README, Pretraining: "The two directions side by side"). It is the computation the directions
make in turn: every random draw is made beforehand, in the same order
(`LanguageModel.draw_noise`), and each direction's backward pass adds its own gradient into the
shared weights' (autograd accumulates under a lock), as `pretrain` does in one process in turn
too: a + b == b + a. Only kernels that round otherwise on fewer threads can tell them apart.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Optional, TypeVar

import torch

from imdb_rnn.pretrain.model import LanguageModel, Noise
from imdb_rnn.pretrain.tbptt import State

T = TypeVar("T")


class SideBySide:
    """Two threads that each run one direction's forward and backward pass; `close()` ends them."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(2, thread_name_prefix="lm-direction")

    @staticmethod
    def usable(model: LanguageModel, device: torch.device, distributed: bool) -> bool:
        """Whether the directions may run side by side: a bidirectional model on CPU in one process
        (DistributedDataParallel expects one backward pass per forward). They do when the process
        also has 2 or more intra-op threads to share."""
        return model.directions == 2 and device.type == "cpu" and not distributed

    def forward_backward(self, model: LanguageModel, inputs: list[torch.Tensor], targets: list[torch.Tensor],
                         state: list[list[State]], noise: list[Noise], scale: float, threads: int,
                         meanwhile: Optional[Callable[[], T]] = None
                         ) -> tuple[list[torch.Tensor], list[list[State]], Optional[T]]:
        """Both directions' `LanguageModel.direction` on `inputs[d]`, `targets[d]` `(B, L)`, each
        followed by the backward pass of its loss times `scale` (gradients accumulate into the
        parameters' `.grad`), on `threads // 2` intra-op threads each; restores `threads` after.
        `meanwhile` runs on the calling thread, on one intra-op thread, as they work (the next
        step's random draws: drawn between steps, they would leave a core idle). Returns (summed
        NLL per direction (0-d, detached), new state per direction, as `forward`; what `meanwhile`
        returned, or None). Raises what a direction or `meanwhile` raised, once both are done."""

        def run(d: int) -> tuple[torch.Tensor, list[State]]:
            torch.set_num_threads(max(1, threads // 2))  # this thread's own intra-op pool
            loss, carried = model.direction(d, inputs[d], targets[d], state[d], noise[d])
            (loss * scale).backward()
            return loss.detach(), carried

        futures = [self.pool.submit(run, d) for d in range(2)]
        error: Optional[BaseException] = None
        extra = None
        try:
            # One thread here too: the directions already hold the cores' threads.
            torch.set_num_threads(1)
            extra = meanwhile() if meanwhile is not None else None
        except BaseException as e:  # noqa: BLE001 (raised below, once the directions are done)
            error = e
        while not all(f.done() for f in futures):  # none may write .grad after this returns or raises
            try:
                wait(futures)
            except BaseException as e:  # noqa: BLE001 (a second Ctrl-C: raised below)
                error = error or e
        torch.set_num_threads(threads)
        error = error or next((f.exception() for f in futures if f.exception() is not None), None)
        if error is not None:
            raise error
        outputs = [f.result() for f in futures]
        return [loss for loss, _ in outputs], [carried for _, carried in outputs], extra

    def close(self) -> None:
        self.pool.shutdown(wait=True)
