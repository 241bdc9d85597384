"""S3 through s3fs, with every request and byte counted (the report prices requests and egress)."""

from __future__ import annotations

from typing import Any

import aiobotocore.session
from s3fs import S3FileSystem

from pathopipe.fileio._counters import process_counters

__all__ = ["CountingS3FileSystem"]


def counting_session() -> Any:
    """An aiobotocore session whose clients count every request and the bytes sent and received
    in this process's counters."""

    def before_send(request: Any = None, **_: Any) -> None:
        length = request.headers.get("Content-Length") if request is not None else None
        written = int(length) if length and request.method in ("PUT", "POST") else 0
        process_counters().add(requests=1, written=written)

    def after_get(http_response: Any = None, parsed: Any = None, **_: Any) -> None:
        if parsed and http_response is not None and http_response.status_code in (200, 206):
            process_counters().add(read=int(parsed.get("ContentLength") or 0))

    session = aiobotocore.session.AioSession()
    session.register("before-send.s3", before_send)
    session.register("after-call.s3.GetObject", after_get)
    return session


class CountingS3FileSystem(S3FileSystem):  # type: ignore[misc]
    """s3fs's filesystem on a counting session. The session is passed to the constructor, not
    kept among the filesystem's arguments, so it still pickles by them (a copy in another
    process counts in that process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("session") is None:
            kwargs["session"] = counting_session()
        super().__init__(*args, **kwargs)
