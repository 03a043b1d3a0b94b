"""`FakeStudio` with the engine's batched entry point (`generate_batch`): each request is generated as the fake
does alone (so `die_on` / `seal_die_on` / "FAIL" behave the same inside a batch), the call's composition is
recorded like the engine records it, and `batch_fail_on` makes the whole batched call fail."""
from __future__ import annotations

from fakes import FakeStudio

from studio.batching import batch_problem, batch_record
from studio.errors import RequestError


class _Member:
    def __init__(self, generated, batch):
        self._generated, self._batch = generated, batch

    def finish(self):
        result = self._generated.finish()
        result.record.batch = self._batch
        return result


class BatchingFakeStudio(FakeStudio):
    def __init__(self, *args, batch_fail_on: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_fail_on = batch_fail_on
        self.batch_calls: list[list[str]] = []  # the keys of every batched call, in order

    def generate_batch(self, requests, *, keys=None, progress=None, deliver=True, **_):
        self.batch_calls.append(list(keys or []))
        if any(batch_problem(r) for r in requests):
            raise RequestError("a request the batch cannot take")
        if self.batch_fail_on and any(self.batch_fail_on in r.prompt for r in requests):
            raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB for the batch")
        composition = batch_record(requests, keys)
        members, at = [], 0
        for r in requests:
            members.append(_Member(self.generate(r, progress=progress, deliver=False),
                                   composition.model_copy(update={"index": at})))
            at += r.batch
        return [m.finish() for m in members] if deliver else members
