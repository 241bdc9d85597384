"""Object-storage requests and bytes, counted per process (the report prices requests and egress)."""

from __future__ import annotations

import threading

from pathopipe._process import shared

__all__ = ["IOCounters", "process_counters"]


class IOCounters:
    """Requests and bytes this process exchanged with object storage (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.bytes_read = 0
        self.bytes_written = 0

    def add(self, requests: int = 0, read: int = 0, written: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes_read += read
            self.bytes_written += written

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "requests": self.requests,
                "bytes_read": self.bytes_read,
                "bytes_written": self.bytes_written,
            }


def process_counters() -> IOCounters:
    """This process's object-storage counters (each worker counts its own)."""
    return shared("io-counters", "s3", IOCounters)
