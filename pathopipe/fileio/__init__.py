"""Where bytes live: local folders, or object storage reached through fsspec (``s3://``, ...).

Everything that touches an output folder or a slide URL goes through these few functions,
so local disk and object storage behave the same: small files are replaced atomically
(temporary file + rename locally; one PUT on object storage, which S3 applies whole), Zarr
stores open as ``LocalStore`` or ``FsspecStore``, and sizes and listings work on both.

Credentials come from the standard places (environment, ``~/.aws``) or from ``storage.options``
in the configuration; they are passed to fsspec only and never written anywhere. Filesystems
are cached per process (each Dask worker builds its own; :mod:`pathopipe._process`), and every
S3 request is counted (:func:`io_counters`) so reports can price requests and egress.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pathopipe._process import process_dict
from pathopipe.errors import BackendUnavailableError, StoreError
from pathopipe.fileio._counters import IOCounters, process_counters

__all__ = [
    "IOCounters",
    "check_bucket",
    "exists",
    "filesystem",
    "glob_names",
    "io_counters",
    "is_url",
    "join",
    "list_files",
    "list_names",
    "open_file",
    "read_bytes",
    "remove",
    "size",
    "total_bytes",
    "write_bytes",
    "zarr_store",
]

Options = Mapping[str, Any] | None

# fsspec protocol -> the extra that installs it
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def is_url(path: str | os.PathLike[str]) -> bool:
    """A fsspec URL (``s3://``, ``https://``, ``memory://``...) rather than a local path."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """``base/part/...`` for a local path or a URL."""
    text = os.fspath(base)
    if is_url(text):
        return "/".join([text.rstrip("/"), *(p.strip("/") for p in parts)])
    return os.path.join(text, *parts)


def io_counters() -> dict[str, int]:
    """Object-storage requests and bytes of this process so far (S3; local I/O is not counted)."""
    return process_counters().snapshot()


_FS_LOCK = threading.Lock()


def _missing_extra(protocol: str, err: ImportError) -> BackendUnavailableError:
    extra = _EXTRAS.get(protocol)
    if extra:
        how = f"install the [{extra}] extra: pip install 'pathopipe[{extra}]'"
    else:
        how = "install the fsspec implementation it names"
    return BackendUnavailableError(f"{protocol}:// needs a package that is not installed ({err}); {how}")


def filesystem(url: str, options: Options = None, *, asynchronous: bool = False) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` (cached per process and options) and the path in it."""
    import fsspec

    protocol = url.split("://", 1)[0]
    opts = dict(options or {})
    # the pid: a forked child builds its own (a filesystem's event loop and sockets are its parent's)
    key = (protocol, json.dumps(opts, sort_keys=True, default=str), asynchronous, os.getpid())
    cache = process_dict("filesystems")
    with _FS_LOCK:
        fs = cache.get(key)
        if fs is None:
            try:
                cls = _counting_class(protocol) or fsspec.get_filesystem_class(protocol)
            except ImportError as err:
                raise _missing_extra(protocol, err) from None
            except ValueError as err:
                raise StoreError(f"{url}: unknown storage protocol {protocol!r} ({err})") from None
            if asynchronous:
                opts["asynchronous"] = True
            fs = cache[key] = cls(**opts, skip_instance_cache=True)  # our own instance, counted alone
    return fs, fs._strip_protocol(url)


def _counting_class(protocol: str) -> Any:
    """For S3, pathopipe's ``S3FileSystem`` whose requests are counted; else None."""
    if protocol not in ("s3", "s3a"):
        return None
    from pathopipe.fileio._s3 import CountingS3FileSystem

    return CountingS3FileSystem


def zarr_store(path: str | os.PathLike[str], options: Options = None, *, read_only: bool = False) -> Any:
    """What ``zarr.open_group``/``open_array`` should open: the path itself locally, an
    ``FsspecStore`` for a URL."""
    if not is_url(path):
        return Path(path)
    from zarr.storage import FsspecStore

    fs, inner = filesystem(os.fspath(path), options, asynchronous=True)
    if not fs.async_impl:  # e.g. memory://: zarr wraps synchronous filesystems itself
        return FsspecStore.from_url(os.fspath(path), storage_options=dict(options or {}), read_only=read_only)
    return FsspecStore(fs, path=inner, read_only=read_only)


def list_names(folder: str | os.PathLike[str], options: Options = None) -> list[str]:
    """Names of the direct entries of a folder or prefix, sorted ([] when absent)."""
    if not is_url(folder):
        return sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    fs, inner = filesystem(os.fspath(folder), options)
    try:
        return sorted(
            name.rstrip("/").rsplit("/", 1)[-1] for name in fs.ls(inner, detail=False, refresh=True)
        )
    except FileNotFoundError:
        return []


def glob_names(folder: str | os.PathLike[str], pattern: str, options: Options = None) -> list[str]:
    """Paths under ``folder`` matching ``pattern`` (e.g. ``*/zarr.json``), relative to it, sorted."""
    if not is_url(folder):
        return sorted(p.relative_to(folder).as_posix() for p in Path(folder).glob(pattern))
    fs, inner = filesystem(os.fspath(folder), options)
    root = inner.rstrip("/")
    return sorted(name[len(root) + 1 :] for name in fs.glob(f"{root}/{pattern}"))


def list_files(folder: str | os.PathLike[str], options: Options = None) -> set[str]:
    """Every file under ``folder`` (recursively), relative to it, with ``/`` separators."""
    if not is_url(folder):
        root = Path(folder)
        return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    fs, inner = filesystem(os.fspath(folder), options)
    prefix = inner.rstrip("/") + "/"
    return {name[len(prefix) :] for name in fs.find(inner)}


def open_file(url: str, options: Options = None, *, block_size: int = 1 << 20) -> Any:
    """A read-only file object over ``url`` that fetches (and keeps) ``block_size`` blocks."""
    fs, inner = filesystem(url, options)
    return fs.open(inner, "rb", block_size=block_size, cache_type="blockcache")


def exists(path: str | os.PathLike[str], options: Options = None) -> bool:
    if not is_url(path):
        return os.path.exists(path)
    fs, inner = filesystem(os.fspath(path), options)
    return bool(fs.exists(inner))


def size(path: str | os.PathLike[str], options: Options = None) -> int:
    """Size of one file or object, in bytes."""
    if not is_url(path):
        return os.path.getsize(path)
    fs, inner = filesystem(os.fspath(path), options)
    return int(fs.size(inner))


def total_bytes(path: str | os.PathLike[str], options: Options = None) -> int:
    """Bytes of every file under a folder or prefix (0 when absent)."""
    if not is_url(path):
        total = 0
        for root, _dirs, files in os.walk(path):
            total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
        return total
    fs, inner = filesystem(os.fspath(path), options)
    try:
        return int(fs.du(inner, total=True))
    except FileNotFoundError:
        return 0


def read_bytes(path: str | os.PathLike[str], options: Options = None) -> bytes:
    """The whole file; FileNotFoundError when it is absent."""
    if not is_url(path):
        return Path(path).read_bytes()
    fs, inner = filesystem(os.fspath(path), options)
    return bytes(fs.cat_file(inner))


def _new_file_mode(target: Path) -> int:
    """The mode a plainly created file would get: the target's own when it exists, else 0o666
    less the process's umask (read from /proc, so the umask itself is never changed)."""
    try:
        return target.stat().st_mode & 0o777
    except FileNotFoundError:
        pass
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def write_bytes(path: str | os.PathLike[str], data: bytes, options: Options = None) -> None:
    """Replace a file atomically: readers see the old or the new content, never a part. The
    file gets the permissions a plain write would give it (not the temporary file's 0600)."""
    if is_url(path):
        fs, inner = filesystem(os.fspath(path), options)
        fs.pipe_file(inner, data)  # one PUT: an object is replaced whole
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove(path: str | os.PathLike[str], options: Options = None) -> None:
    """Delete a file or a whole folder/prefix; nothing when absent."""
    if not is_url(path):
        import shutil

        target = Path(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        return
    fs, inner = filesystem(os.fspath(path), options)
    try:
        fs.rm(inner, recursive=True)
    except FileNotFoundError:
        pass
    fs.invalidate_cache(inner)


def check_bucket(url: str, options: Options = None, *, write: bool) -> None:
    """Fail early, with a clear message, when ``url`` cannot be listed (or written, with
    ``write``): wrong endpoint, missing bucket, missing credentials or permission."""
    fs, inner = filesystem(url, options)
    bucket = inner.split("/", 1)[0]
    endpoint = getattr(fs, "client_kwargs", {}).get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
    where = f"{url} (endpoint {endpoint or 'default AWS'})"
    try:
        fs.ls(bucket, refresh=True)
        if write:
            probe = f"{inner.rstrip('/')}/.pathopipe-write-check"
            fs.pipe_file(probe, b"")
            fs.rm(probe)
    except FileNotFoundError:
        raise StoreError(
            f"{where}: bucket {bucket!r} does not exist; create it or fix the URL (nothing was run)"
        ) from None
    except PermissionError as err:
        raise StoreError(
            f"{where}: access denied ({err}); check the credentials (environment, ~/.aws or "
            "storage.options) (nothing was run)"
        ) from None
    except Exception as err:  # noqa: BLE001 (botocore raises its own types, e.g. EndpointConnectionError)
        raise StoreError(
            f"{where}: object storage not reachable ({type(err).__name__}: {err}); check the "
            "endpoint (AWS_ENDPOINT_URL or storage.options.endpoint_url) (nothing was run)"
        ) from None
