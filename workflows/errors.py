"""Errors services raise for bad input and lost races; faces turn them into 4xx answers."""

from __future__ import annotations


class ServiceError(Exception):
    """Base for expected, user-facing failures. The message is safe to show."""

    status_code = 400


class InvalidInput(ServiceError):
    status_code = 400


class Conflict(ServiceError):
    """Someone else changed the object first (a decided task, a finished run ...)."""

    status_code = 409


class NotAllowed(ServiceError):
    status_code = 403
