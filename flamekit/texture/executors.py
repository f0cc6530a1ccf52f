"""Where :func:`flamekit.texture.build.build_space` runs its per-batch stage work.

A stage hands an executor one function, the batches and the read-only context they share;
the executor returns one result per batch, in order. The function writes its own per-image
work files atomically, so whichever executor ran it the work folder ends up the same and a
later run resumes from it. ``local`` runs the batches in this process; ``ray`` runs each as a
Ray task (a GPU task when the build's device is cuda), on a local Ray instance or a cluster.
On a cluster the photos, landmark/mask files and the work folder must be on a file system
every node sees (the tasks read and write them by path).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["RAY_HINT", "BatchCrashed", "LocalExecutor", "RayExecutor", "make_executor"]

RAY_HINT = "the ray executor needs Ray: pip install 'flamekit[ray]'"


class BatchCrashed(RuntimeError):
    """A batch's task died as a whole (worker crash, lost node): its images all fail."""


class LocalExecutor:
    """Runs the batches one after the other in this process."""

    name = "local"

    def map(
        self, fn: Callable, batches: Sequence, context: Any, on_result: Callable | None = None
    ) -> list:
        results = []
        for batch in batches:
            result = fn(batch, context)
            if on_result is not None:
                on_result(result)
            results.append(result)
        return results

    def close(self) -> None:
        pass


class RayExecutor:
    """One Ray task per batch; the shared context is put in the object store once per stage.

    Without ``address`` a local instance is started (``num_cpus`` of them, no dashboard);
    with one, that cluster is joined. A Ray already initialised in this process (a test
    fixture, a driver script) is used as it is and left running.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, num_cpus: int | None = None, num_gpus: float = 0.0
    ) -> None:
        try:
            import ray
        except ImportError as error:
            raise ImportError(RAY_HINT) from error
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            options: dict[str, Any] = dict(
                ignore_reinit_error=True, log_to_driver=False, include_dashboard=False
            )
            if address is None:
                options["num_cpus"] = num_cpus
            ray.init(address=address, **options)
            self._started = True
        self.num_gpus = float(num_gpus)

    def map(
        self, fn: Callable, batches: Sequence, context: Any, on_result: Callable | None = None
    ) -> list:
        ray = self._ray
        if not batches:
            return []
        remote = ray.remote(fn).options(
            num_gpus=self.num_gpus, num_cpus=0 if self.num_gpus else 1, max_retries=0
        )
        shared = ray.put(context)
        refs = [remote.remote(batch, shared) for batch in batches]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list = [None] * len(refs)
        pending = list(refs)
        try:
            while pending:  # report results as they finish, keep them in batch order
                ready, pending = ray.wait(pending, num_returns=1)
                i = index[ready[0]]
                try:
                    results[i] = ray.get(ready[0])
                except Exception as error:  # noqa: BLE001 - a dead task fails its batch only
                    results[i] = BatchCrashed(f"its Ray task failed: {error}")
                if on_result is not None:
                    on_result(results[i])
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        return results

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def make_executor(
    name: str, address: str | None = None, num_cpus: int | None = None, use_gpu: bool = False
):
    """``"local"`` or ``"ray"`` (ImportError with the install hint when Ray is missing)."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, num_cpus, 1.0 if use_gpu else 0.0)
    raise ValueError(f"unknown executor {name!r}; use 'local' or 'ray'")
