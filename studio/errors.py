"""Errors the public API raises. Each message names the problem in one line."""
from __future__ import annotations


class StudioError(Exception):
    """Base class of errors meant to be shown to a user as one line."""


class RequestError(StudioError, ValueError):
    """The request is malformed (bad size, unknown sampler, mask mismatch, ...)."""


class UnknownModel(RequestError):
    """The model name is neither registered nor an existing path."""
