"""Typed errors raised by sources.

Every error keeps the facts a caller needs to act on (which producer file, which device, which
feature and its allowed values) as attributes, and carries all of them in ``args`` so it pickles
unchanged across the camera's acquisition process.
"""
from __future__ import annotations


class SourceError(Exception):
    """Base of every error a source raises."""


class UnknownScheme(SourceError, ValueError):
    """No source is registered for the URI's scheme."""

    def __init__(self, scheme: str, known: list[str]):
        super().__init__(scheme, known)
        self.scheme, self.known = scheme, list(known)

    def __str__(self) -> str:
        return f"no source for scheme {self.scheme!r}; known schemes: {', '.join(self.known) or 'none'}"


class SourceStopped(SourceError):
    """read() on a source that was stopped or closed (iteration ends on it)."""


class ProducerNotFound(SourceError):
    """A GenTL producer (.cti) could not be found or loaded."""

    def __init__(self, path: str, reason: str = "no such file"):
        super().__init__(path, reason)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"GenTL producer {self.path!r}: {self.reason}"


class DeviceNotFound(SourceError):
    """No device matches what was asked for. ``available`` lists what exists (list_devices rows)."""

    def __init__(self, requested: str, available: list[dict]):
        super().__init__(requested, available)
        self.requested, self.available = requested, list(available)

    def __str__(self) -> str:
        found = ", ".join(f"serial {d.get('serial')!r} (id {d.get('id')!r}, model {d.get('model')!r})"
                          for d in self.available)
        return f"no device matches {self.requested!r}; available: {found or 'none'}"


class FeatureNotAvailable(SourceError):
    """The device's node map has no such feature (or it is not implemented/readable now)."""

    def __init__(self, feature: str, device: str):
        super().__init__(feature, device)
        self.feature, self.device = feature, device

    def __str__(self) -> str:
        return f"feature {self.feature!r} is not available on {self.device}"


class FeatureNotWritable(SourceError):
    """The feature exists but cannot be written (read-only, or locked while streaming)."""

    def __init__(self, feature: str, device: str):
        super().__init__(feature, device)
        self.feature, self.device = feature, device

    def __str__(self) -> str:
        return f"feature {self.feature!r} is not writable on {self.device}"


class InvalidFeatureValue(SourceError, ValueError):
    """A value outside what the feature allows; ``allowed`` says what it allows."""

    def __init__(self, feature: str, value, allowed: str, device: str = ""):
        super().__init__(feature, value, allowed, device)
        self.feature, self.value, self.allowed, self.device = feature, value, allowed, device

    def __str__(self) -> str:
        where = f" on {self.device}" if self.device else ""
        return f"{self.feature}={self.value!r} is invalid{where}; allowed: {self.allowed}"


class AcquisitionTimeout(SourceError, TimeoutError):
    """No frame arrived within the timeout given to read()."""

    def __init__(self, timeout_s: float, source: str = ""):
        super().__init__(timeout_s, source)
        self.timeout_s, self.source = timeout_s, source

    def __str__(self) -> str:
        return f"no frame from {self.source or 'source'} within {self.timeout_s:g} s"


class DeviceLost(SourceError):
    """The device (or the process acquiring from it) went away and could not be reopened."""

    def __init__(self, device: str, reason: str):
        super().__init__(device, reason)
        self.device, self.reason = device, reason

    def __str__(self) -> str:
        return f"lost {self.device}: {self.reason}"
