"""``timm/<name>`` specs are resolved through timm once per timm version, then read from a cache
(a run's driver then does not import timm and torch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pathopipe.features import resolve_model
from pathopipe.features._spec import _timm_registry_spec


def test_a_timm_spec_is_cached_and_read_back_without_importing_timm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATHOPIPE_CACHE", str(tmp_path))
    first = resolve_model("timm/resnet18")
    assert first == _timm_registry_spec("resnet18")  # what timm itself says
    (cache,) = tmp_path.glob("timm-*-specs.json")
    assert json.loads(cache.read_text())["resnet18"]["mean"] == list(first.mean)
    probe = (
        "import sys; from pathopipe.features import resolve_model; "
        "spec = resolve_model('timm/resnet18'); print(spec.model_dump_json()); "
        "print('torch' in sys.modules, 'timm' in sys.modules)"
    )
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={**__import__("os").environ, "PATHOPIPE_CACHE": str(tmp_path)})  # fmt: skip
    spec_json, imported = ran.stdout.strip().splitlines()
    assert json.loads(spec_json) == first.model_dump(mode="json")
    assert imported == "False False"


def test_a_damaged_cache_is_resolved_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHOPIPE_CACHE", str(tmp_path))
    resolve_model("timm/resnet18")
    (cache,) = tmp_path.glob("timm-*-specs.json")
    cache.write_text("{not json")
    assert resolve_model("timm/resnet18") == _timm_registry_spec("resnet18")
    assert "resnet18" in json.loads(cache.read_text())


def test_a_weights_files_sha256_is_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing a multi-GB weights file takes seconds per run and per worker: it is done once per
    file, size and modification time."""
    import hashlib

    from pathopipe.features._weights import SHA256_CACHE, weights_sha256

    monkeypatch.setenv("PATHOPIPE_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"weights one")
    assert weights_sha256(weights) == hashlib.sha256(b"weights one").hexdigest()
    cache = tmp_path / "cache" / SHA256_CACHE
    known = json.loads(cache.read_text())
    size, mtime, _ = known[str(weights.resolve())]
    known[str(weights.resolve())] = [size, mtime, "remembered"]  # what the next call must read back
    cache.write_text(json.dumps(known))
    assert weights_sha256(weights) == "remembered"
    weights.write_bytes(b"weights two, longer")
    assert weights_sha256(weights) == hashlib.sha256(b"weights two, longer").hexdigest()
