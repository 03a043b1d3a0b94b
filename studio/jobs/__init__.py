"""Batch prompt-file jobs (issue 5): `studio render FILE --out DIR`, `studio replay DIR`, and the Python API

    from studio.jobs import render
    summary = render("prompts.yaml", "out/", seed=7)          # -> JobSummary (succeeded/failed/skipped...)

See `studio.jobs.spec` for the file formats, item identity and seed derivation, `studio.jobs.manifest` for
`manifest.jsonl`, `studio.jobs.runner` for the job engine (resume, failure isolation, cancel hook, callbacks)
and `studio.jobs.ray_executor` for the Ray executor.
"""
from __future__ import annotations

from .manifest import MANIFEST, read_manifest
from .replay import ReplayReport, replay
from .runner import InvalidJob, ItemOutcome, JobSummary, render
from .spec import JobFileError, JobItem, JobSpec, derive_seed, load_job

__all__ = ["MANIFEST", "InvalidJob", "ItemOutcome", "JobFileError", "JobItem", "JobSpec", "JobSummary",
           "ReplayReport", "derive_seed", "load_job", "read_manifest", "render", "replay"]
