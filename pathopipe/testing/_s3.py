"""An S3 API server on loopback for tests and benchmarks: moto's standalone server, run as a
subprocess (the ``moto[server]`` package, in the ``dev`` extra)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint and credentials it accepts (any, for moto)."""

    endpoint: str
    key: str
    secret: str
    region: str = "us-east-1"

    @property
    def storage_options(self) -> dict[str, object]:
        """fsspec/s3fs options reaching this server (``storage.options`` in a config)."""
        return {"key": self.key, "secret": self.secret, "endpoint_url": self.endpoint}

    @property
    def environment(self) -> dict[str, str]:
        """The same as environment variables (what a shell user would export)."""
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": self.region}  # fmt: skip

    def create_bucket(self, name: str) -> None:
        import s3fs

        s3fs.S3FileSystem(**self.storage_options).mkdir(name)

    def upload(self, local: str | os.PathLike[str], url: str) -> None:
        import s3fs

        s3fs.S3FileSystem(**self.storage_options).put_file(os.fspath(local), url)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def s3_server(
    *, key: str = "pathopipe-test-key", secret: str = "pathopipe-test-secret", log: Path | None = None
) -> Iterator[S3Server]:
    """Start moto's S3 server on a free loopback port; stop it on exit."""
    port = _free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        f"moto S3 server did not start (exit {proc.poll()}); is moto[server] installed?"
                    ) from None
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}", key, secret)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if log:
            out.close()  # type: ignore[union-attr]
