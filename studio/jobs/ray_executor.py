"""Ray executor: one actor per GPU (or per CPU slot), each holding its own `Studio` (its loaded pipeline).

The driver feeds one item at a time to each idle actor and streams results back as they finish (`ray.wait`);
actors return sealed bytes + records and never touch the output folder, so the driver alone writes files and
the manifest. An actor that dies mid-item (node lost, OOM-killed, `kill -9`) is replaced and its item is
retried on another actor, up to `max_attempts` times; an item is written at most once.

`ray` is an optional extra (`pip install "diffusion-studio[ray]"`); it is imported only when this executor runs.
Actors get the driver's `DIFFUSION_STUDIO_HOME` (the same signing keys and ledger) and offline/hub settings
through the job's `runtime_env`. On a multi-node cluster every node needs diffusion-studio installed and the
same paths (models, init images, the studio home) visible.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import deque
from typing import Any, Callable, Optional

from ..errors import StudioError

log = logging.getLogger(__name__)
PASS_ENV_PREFIXES = ("DIFFUSION_STUDIO_", "HF_", "TRANSFORMERS_", "HUGGINGFACE_")


def _import_ray():
    try:
        import ray
    except ImportError:
        raise StudioError('the ray executor needs Ray: pip install "ray[default]" '
                          '(or pip install "diffusion-studio[ray]")') from None
    return ray


def worker_env() -> dict[str, str]:
    """Environment the actors run with: the driver's studio home (resolved) plus studio/hub settings."""
    from ..config import ENV_HOME, config_dir

    env = {k: v for k, v in os.environ.items() if k.startswith(PASS_ENV_PREFIXES)}
    env[ENV_HOME] = str(config_dir().resolve())
    return env


class _StudioActor:
    """Holds one `Studio` (so one loaded model, reused across items) for the actor's lifetime."""

    def __init__(self, studio_factory: Optional[Callable[[], Any]] = None):
        if studio_factory is not None:
            self.studio = studio_factory()
        else:
            from studio.engine import Studio

            self.studio = Studio()
        import socket

        self.name = f"ray-{socket.gethostname()}-{os.getpid()}"

    def render(self, task: dict) -> dict:
        from studio.jobs.runner import execute

        return execute(self.studio, task, worker=self.name)

    def ping(self) -> str:
        return self.name


class RayExecutor:
    name = "ray"

    def __init__(self, workers: int = 0, address: Optional[str] = None,
                 studio_factory: Optional[Callable[[], Any]] = None, max_attempts: int = 3):
        self.workers = int(workers or 0)
        self.address = address
        self.studio_factory = studio_factory
        self.max_attempts = max(1, max_attempts)

    def _init(self, ray) -> bool:
        if ray.is_initialized():
            return False
        runtime_env = {"env_vars": worker_env()}
        if self.address:
            ray.init(address=self.address, runtime_env=runtime_env, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=max(1, self.workers or (os.cpu_count() or 1)), include_dashboard=False,
                     runtime_env=runtime_env, logging_level=logging.WARNING)
        return True

    def run(self, tasks: list[dict], emit: Callable[[dict], None], cancel: threading.Event,
            on_step=None) -> None:
        if not tasks:
            return
        ray = _import_ray()
        started_here = self._init(ray)
        actors: list = []
        try:
            resources = ray.cluster_resources()
            gpus = int(resources.get("GPU", 0))
            slots = gpus or int(resources.get("CPU", 1))
            n = max(1, min(self.workers or slots, len(tasks)))
            options = {"num_gpus": 1} if gpus else {"num_cpus": 1}
            actor_cls = ray.remote(max_restarts=0, max_task_retries=0, **options)(_StudioActor)

            def spawn():
                return actor_cls.remote(self.studio_factory)

            actors = [spawn() for _ in range(n)]
            todo = deque(tasks)
            attempts: dict[str, int] = {}
            inflight: dict = {}  # ObjectRef -> (actor index, task)
            idle = deque(range(n))
            while todo or inflight:
                if cancel.is_set():
                    break
                while idle and todo:
                    i = idle.popleft()
                    task = todo.popleft()
                    attempts[task["key"]] = attempts.get(task["key"], 0) + 1
                    inflight[actors[i].render.remote(task)] = (i, task)
                ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5)
                for ref in ready:
                    i, task = inflight.pop(ref)
                    key = task["key"]
                    try:
                        result = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError,
                            ray.exceptions.ObjectLostError) as exc:
                        # The actor died mid-item: replace it; retry the item elsewhere (bounded).
                        try:
                            ray.kill(actors[i], no_restart=True)
                        except Exception:
                            pass
                        actors[i] = spawn()
                        idle.append(i)
                        if attempts[key] < self.max_attempts:
                            log.warning("worker died on %s (%s); retrying", key, type(exc).__name__)
                            todo.appendleft(task)
                        else:
                            emit({"key": key, "status": "failed", "attempts": attempts[key],
                                  "error": f"worker died {attempts[key]} times on this item "
                                           f"({type(exc).__name__})", "error_type": type(exc).__name__,
                                  "worker": "ray"})
                        continue
                    except ray.exceptions.RayTaskError as exc:  # `execute` catches item errors; this is a bug
                        idle.append(i)
                        emit({"key": key, "status": "failed", "attempts": attempts[key],
                              "error": " ".join(str(exc).split())[:500], "error_type": "RayTaskError",
                              "worker": "ray"})
                        continue
                    idle.append(i)
                    result["attempts"] = attempts[key]
                    emit(result)
        finally:
            for a in actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:
                    pass
            if started_here:
                ray.shutdown()
