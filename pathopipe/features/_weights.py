"""Model weights: seeded random, pretrained from the local Hugging Face cache (or torch hub's
checkpoint folder for weights published as a release), or a local file.

Nothing is downloaded. Loading is strict: a file that does not fit the architecture is an
error listing what is missing, unexpected or of the wrong shape, never a partial load.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathopipe._cache import remember, remembered
from pathopipe.errors import WeightsError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")
SHA256_CACHE = "weights-sha256.json"  # file -> [size, mtime_ns, sha256]


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights come from, as recorded in the feature attrs."""

    kind: str  # "random" | "pretrained" | "file"
    path: str | None = None
    sha256: str | None = None
    seed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "sha256": self.sha256, "seed": self.seed}


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hub_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def weights_sha256(path: str | Path) -> str:
    """The sha256 of a weights file: the name of the blob a Hugging Face cache file links to
    (large files are stored under their sha256); else remembered in pathopipe's cache per file,
    size and modification time, since hashing a multi-GB file takes seconds on every run and in
    every worker that loads it."""
    real = os.path.realpath(path)
    blob = Path(real).name
    if len(blob) == 64 and all(c in "0123456789abcdef" for c in blob):
        return blob
    stat = os.stat(real)
    known = remembered(SHA256_CACHE, real)
    if isinstance(known, list) and known[:2] == [stat.st_size, stat.st_mtime_ns]:
        return str(known[2])
    digest = sha256_file(real)
    remember(SHA256_CACHE, real, [stat.st_size, stat.st_mtime_ns, digest])
    return digest


def cached_hub_file(hub_id: str, filename: str, model_name: str) -> Path:
    """``filename`` of ``hub_id`` in the local Hugging Face cache, or an error saying how to get it."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(hub_id, filename)
    if isinstance(found, str) and os.path.exists(found):
        return Path(found)
    raise WeightsError(
        f"{filename} of model {model_name!r} ({hub_id}) is not in the Hugging Face cache {hub_cache_dir()} "
        "and pathopipe does not download at run time. Download it where there is network with "
        f"`huggingface-cli download {hub_id}`, after accepting the model's terms on "
        f"https://huggingface.co/{hub_id} if it is gated, and copy the cache here (or set HF_HUB_CACHE)"
    )


def torch_hub_checkpoints() -> Path:
    """torch.hub's checkpoint folder, where ``torch.hub.load_state_dict_from_url`` (a card's
    ``torch.hub.load``) keeps downloaded weights; found without importing torch."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.environ.get("TORCH_HOME") or os.path.join(cache, "torch"), "hub", "checkpoints")


def _released_file(url: str, model_name: str, terms: str) -> Path:
    """Weights published at ``url`` (a release, not the hub), from torch.hub's checkpoint folder."""
    path = torch_hub_checkpoints() / url.rsplit("/", 1)[-1]
    if path.is_file():
        return path
    raise WeightsError(
        f"pretrained weights for model {model_name!r} are published at {url} and are not in torch hub's "
        f"checkpoint folder {path.parent}; pathopipe does not download at run time. Download them where "
        f"there is network with `curl -L --create-dirs -o {path} {url}`{terms} and copy the file here (or "
        "set TORCH_HOME); or pass --weights /path/to/file, or --weights random for random weights"
    )


def cached_pretrained_file(
    hub_id: str | None, model_name: str, licence: str = "", *, filename: str | None = None,
    url: str | None = None, repo_type: str = "model",
) -> Path:  # fmt: skip
    """The pretrained weights of a model, from where its card publishes them: ``filename`` (by
    default model.safetensors or pytorch_model.bin) of ``hub_id`` in the local Hugging Face
    cache, or a release ``url``'s file in torch hub's checkpoint folder; else a clear error
    naming the source, the cache, the command that downloads it and the model's licence."""
    terms = f" (licence: {licence})" if licence and licence != "-" else ""
    if url:
        return _released_file(url, model_name, terms)
    if not hub_id:
        raise WeightsError(
            f"model {model_name!r} has no pretrained weights source; use --weights random or "
            "--weights /path/to/weights.safetensors"
        )
    from huggingface_hub import try_to_load_from_cache

    for name in (filename,) if filename else WEIGHT_FILES:
        found = try_to_load_from_cache(hub_id, name, repo_type=repo_type)
        if isinstance(found, str) and os.path.exists(found):
            return Path(found)
    which = f"{filename} of {hub_id}" if filename else hub_id
    download = f"{hub_id} {filename}" if filename else hub_id
    page = f"https://huggingface.co/{hub_id}"
    if repo_type != "model":
        download += f" --repo-type {repo_type}"
        page = f"https://huggingface.co/{repo_type}s/{hub_id}"
    raise WeightsError(
        f"pretrained weights for model {model_name!r} ({which}) are not in the Hugging Face cache "
        f"{hub_cache_dir()} and pathopipe does not download at run time. Download them where there "
        f"is network with `huggingface-cli download {download}`, after accepting the terms on "
        f"{page} if it is gated{terms}, and copy the cache here (or set HF_HUB_CACHE); or pass "
        "--weights /path/to/file, or --weights random for random weights"
    )


def read_state_dict(path: str | Path) -> dict[str, Any]:
    """Tensors from .safetensors, .pth, .pt or .bin (torch ``weights_only`` load: no code runs)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {str(path)!r} does not exist")
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"cannot read weights file {str(path)!r}: {type(err).__name__}: {err}") from err
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightsError(f"weights file {str(path)!r} holds {type(state).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_strict(model: Any, state: dict[str, Any], *, source: str, classifier: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``model``; classifier weights of a head the model does not have are dropped."""
    own = model.state_dict()
    state = {
        k: v for k, v in state.items() if k in own or not k.startswith(tuple(c + "." for c in classifier))
    }
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:

        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        problems = []
        if missing:
            problems.append(f"{len(missing)} missing: {few(missing)}")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected: {few(unexpected)}")
        if wrong:
            shapes = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}" for k in wrong]
            problems.append(f"{len(wrong)} of wrong shape: {few(shapes)}")
        raise WeightsError(
            f"weights {source} do not fit {type(model).__name__}: "
            + "; ".join(problems)
            + ". Check the --model matches the checkpoint"
        )
    model.load_state_dict(state, strict=True)
