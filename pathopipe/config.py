"""Run configuration: a pydantic tree of per-stage models, loaded from YAML plus overrides.

Unknown keys and bad values are errors that name the key, the value and what is allowed.
Pass the resolved config explicitly to every stage; nothing reads a global settings object.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pathopipe._config_errors import format_validation, known_name
from pathopipe._registry import did_you_mean
from pathopipe.errors import ConfigError
from pathopipe.tissue import OtsuTissueConfig, TissueConfig

__all__ = [
    "ClusterConfig",
    "FeaturesConfig",
    "KubernetesConfig",
    "RunConfig",
    "SlideConfig",
    "SlurmConfig",
    "StorageConfig",
    "StoreConfig",
    "TilingConfig",
    "config_hash",
    "load_config",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(_Model):
    """Object storage (any fsspec URL, e.g. s3://) for slides and output folders."""

    options: dict[str, Any] = Field(
        default_factory=dict,
        exclude=True,  # may hold credentials: never dumped into run.json, stores or logs
        repr=False,
        description="fsspec options for URLs, e.g. {endpoint_url: http://host:9000, key: ..., secret: ...} "
        "(default: the environment and ~/.aws); never written to any output",
    )
    block_size_mb: float = Field(
        1, gt=0, le=1024, description="block size of the read cache that parses slide headers over URLs (MiB)"
    )
    lock_lease_s: float = Field(
        60, gt=0, description="run lock on object storage: the lease a run renews every third of it (s)"
    )

    def reader_options(self) -> dict[str, Any]:
        return {"storage_options": dict(self.options), "block_size": int(self.block_size_mb * (1 << 20))}


class SlideConfig(_Model):
    """How slides are opened."""

    backend: str = Field(
        "auto", description="'auto' (every slide backend by priority) or one backend (`pathopipe backends`)"
    )
    assume_mpp: float | None = Field(
        None, gt=0, le=100, description="µm/px used only for slides without resolution metadata"
    )
    max_pixels: int = Field(
        2**37,
        ge=1,
        description="refuse slides declaring more level-0 pixels than this (decompression bombs)",
    )
    cache_mb: float = Field(
        256, ge=1, le=65536, description="tiff backend: most decoded source tiles kept per worker (MiB)"
    )
    decode_threads: int = Field(
        0, ge=0, le=64, description="tiff backend: threads decoding a batch of source tiles (0: min(4, CPUs))"
    )
    modality: Literal["brightfield", "fluorescence"] = Field(
        "brightfield",
        description="what the cohort is: slides of the other kind (dark or bright background) are refused",
    )

    # settings that change speed and memory, never pixels (left out of the config hash)
    PERFORMANCE_ONLY: ClassVar[frozenset[str]] = frozenset({"cache_mb", "decode_threads"})

    def reader_options(self, storage: StorageConfig | None = None) -> dict[str, dict[str, Any]]:
        """Per-backend options for :func:`pathopipe.slide.open_slide` (with ``storage``: how
        slides given as URLs are reached)."""
        remote = storage.reader_options() if storage is not None else {}
        return {
            "tiff": {"cache_mb": self.cache_mb, "threads": self.decode_threads, **remote},
            "tiffslide": remote,
        }

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        from pathopipe.slide import slide_backends

        return known_name(slide_backends, value, also=("auto",))


class RegionsConfig(_Model):
    """Regions of interest from each slide's annotations (QuPath GeoJSON, ASAP XML, label masks)."""

    include: list[str] = Field(
        default_factory=list, description="classes a kept tile lies in (empty: anywhere not excluded)"
    )
    exclude: list[str] = Field(
        default_factory=list, description="classes cut out of the kept region (pen marks, ...)"
    )
    min_fraction: float = Field(
        0.5, ge=0, le=1, description="share of a tile inside the included classes, outside the excluded ones"
    )
    folder: str | None = Field(
        None,
        description="annotations folder: <slide file stem>.geojson|.json|.xml|.png|.tif for slides the slide "
        "list gives no annotations column",
    )

    def active(self) -> bool:
        """Whether tiles are filtered by regions (annotations are then required)."""
        return bool(self.include or self.exclude)


class TilingConfig(_Model):
    """The tile grid, at a physical resolution."""

    target_mpp: float = Field(0.5, gt=0, le=100, description="tile resolution, µm per pixel (0.5 ≈ 20x)")
    tile_size: int = Field(224, ge=8, le=4096, description="tile side in pixels at target_mpp")
    stride: int | None = Field(
        None, ge=1, le=4096, description="grid step in pixels at target_mpp (default: tile_size)"
    )
    min_tissue_fraction: float = Field(
        0.5, ge=0, le=1, description="keep tiles with at least this tissue area fraction"
    )
    edge: Literal["drop", "pad"] = Field(
        "drop", description="tiles crossing the slide border: drop, or pad with white"
    )
    mpp_tolerance: float = Field(
        0.02, ge=0, lt=0.5, description="relative mpp difference read without resizing (0.499 ≈ 0.5)"
    )
    resample: Literal["auto", "area"] = Field(
        "auto",
        description="downsampling by 2, 4 or 8: 'auto' decodes JPEG source tiles at that scale "
        "(tiff backend: ~1.4x less decoding, mean difference to 'area' under 0.5 grey levels), "
        "else averages; 'area' always averages the full-resolution pixels (INTER_AREA, as every backend)",
    )

    @property
    def step(self) -> int:
        return self.stride if self.stride is not None else self.tile_size


class StoreConfig(_Model):
    """How tiles are stored."""

    codec: str = Field(
        "jpeg",
        description="tile codec (`pathopipe backends`): jpeg, lossless zstd, or 'none' (no tile pixels)",
    )
    jpeg_quality: int = Field(90, ge=1, le=100)
    jpeg_subsampling: Literal["444", "420"] = Field("444", description="chroma subsampling of JPEG tiles")
    zstd_level: int = Field(3, ge=1, le=22)
    tiles_per_shard: int = Field(
        1024, ge=1, le=65536, description="most tiles per shard file; one task writes one shard"
    )
    min_shards_per_slide: int = Field(
        8, ge=1, le=4096, description="smaller shards (down to 32 tiles) so one slide spreads over workers"
    )

    @field_validator("codec")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        from pathopipe.store.tile_codecs import tile_codecs

        return known_name(tile_codecs, value, choice=True)

    def shard_size(self, n_tiles: int) -> int:
        """Tiles per shard for a slide of ``n_tiles`` tiles."""
        wanted = -(-n_tiles // self.min_shards_per_slide)
        size = min(self.tiles_per_shard, max(wanted, min(32, self.tiles_per_shard)))
        return max(1, min(size, n_tiles))


class SlurmConfig(_Model):
    """SLURM jobs running Dask workers (dask-jobqueue ``SLURMCluster``; extra ``[slurm]``)."""

    queue: str | None = Field(None, description="partition (sbatch -p); default: the cluster's default")
    account: str | None = Field(None, description="sbatch -A")
    cores: int = Field(2, ge=1, le=1024, description="cores per job")
    processes: int = Field(1, ge=1, le=256, description="Dask worker processes per job")
    memory: str = Field("8GiB", description="memory per job, e.g. '32GiB'")
    walltime: str = Field("01:00:00", description="job time limit, HH:MM:SS")
    job_extra_directives: list[str] = Field(
        default_factory=list, description="extra #SBATCH lines, e.g. ['--gres=gpu:1']"
    )
    worker_resources: dict[str, float] = Field(
        default_factory=dict, description="Dask resources each worker offers, e.g. {GPU: 1}"
    )
    minimum_jobs: int = Field(1, ge=0, le=10000, description="adaptive scaling: fewest jobs")
    maximum_jobs: int = Field(1, ge=1, le=10000, description="adaptive scaling: most jobs")
    interface: str | None = Field(None, description="network interface workers and scheduler use (e.g. ib0)")
    log_directory: str | None = Field(None, description="folder for the jobs' stdout/stderr")
    local_directory: str | None = Field(None, description="worker scratch folder on the node")


class KubernetesConfig(_Model):
    """Dask workers as pods (dask-kubernetes ``KubeCluster``; extra ``[k8s]``)."""

    image: str = Field("ghcr.io/dask/dask:latest", description="worker image with pathopipe installed")
    namespace: str | None = Field(None, description="namespace (default: the current context's)")
    n_workers: int = Field(2, ge=1, le=10000, description="worker pods")
    resources: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="pod resources, e.g. {limits: {nvidia.com/gpu: '1'}}"
    )


class ClusterConfig(_Model):
    """Where the Dask workers run: a profile kind plus its settings (``configs/clusters/``)."""

    kind: str = Field("local", description="which cluster to start or join (`pathopipe backends`)")
    n_workers: int | None = Field(
        None, ge=1, le=1024, description="local: worker processes (default: CPU cores)"
    )
    threads_per_worker: int = Field(1, ge=1, le=256)
    memory_limit: str = Field("auto", description="per-worker memory limit, e.g. '4GiB' or 'auto'")
    dashboard: bool | Literal["auto"] = Field(
        "auto", description="serve the Dask dashboard on a loopback port (auto: for runs of over one slide)"
    )
    profile: bool = Field(
        False,
        description="sample worker stacks for the dashboard's Profile page (on with --perf-report; "
        "costs compute-bound workers a few % of throughput)",
    )
    cpu_workers: int = Field(
        1, ge=0, le=1024, description="local-cuda: CPU worker processes for tiling, next to one per GPU"
    )
    address: str | None = Field(None, description="address: the running scheduler, e.g. tcp://host:8786")
    allowed_failures: int = Field(
        1, ge=0, le=10, description="a task may lose its worker this often before its slide fails"
    )
    worker_timeout_s: float = Field(
        600, gt=0, description="slurm, kubernetes, address: how long to wait for the first worker (s)"
    )
    slurm: SlurmConfig = SlurmConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()

    @property
    def wants_dashboard(self) -> bool:
        """Whether to serve the dashboard (``auto`` not yet resolved for a run counts as on)."""
        return self.dashboard is not False

    def for_slides(self, n_slides: int) -> ClusterConfig:
        """This configuration for a run of ``n_slides`` slides (``dashboard: auto`` decided)."""
        if self.dashboard != "auto":
            return self
        return self.model_copy(update={"dashboard": n_slides > 1})

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        from pathopipe.parallel.cluster import cluster_kinds

        return known_name(cluster_kinds, value, choice=True)


class FeaturesConfig(_Model):
    """Feature extraction in ``pathopipe run`` (no models: tiling only)."""

    models: list[str] = Field(
        default_factory=list, description="preset keys or timm/<name>; all run in one pass over the tiles"
    )
    weights: str = Field(
        "pretrained", description="pretrained (local hub cache, never downloaded), random or a file"
    )
    seed: int = Field(0, ge=0, description="seed of random weights")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="autocast precision")
    dtype: Literal["float16", "float32"] = Field("float16", description="stored feature dtype")
    batch_size: int = Field(32, ge=1, le=4096)
    device: str = Field("auto", description="auto, cpu or cuda[:N]")
    torch_threads: int | None = Field(
        None, ge=1, le=1024, description="torch threads per worker (default: cores / workers)"
    )
    compile: bool = Field(False, description="torch.compile the models")
    decode_threads: int = Field(
        0,
        ge=0,
        le=64,
        description="tile decode threads per extraction task (0: 1 on CPU, where the models hold every "
        "core; on CUDA the worker's cores per GPU less one, at most 16)",
    )


class RunConfig(_Model):
    """Everything a run needs; stored resolved in run.json and in every slide store."""

    slide: SlideConfig = SlideConfig()
    tissue: TissueConfig = OtsuTissueConfig()
    tiling: TilingConfig = TilingConfig()
    store: StoreConfig = StoreConfig()
    features: FeaturesConfig = FeaturesConfig()
    cluster: ClusterConfig = ClusterConfig()
    storage: StorageConfig = StorageConfig()
    regions: RegionsConfig = RegionsConfig()

    def output_relevant(self) -> dict[str, Any]:
        """The parts that change what is written to a slide store's tiles (not the cluster;
        features carry their own hash per model)."""
        data = self.model_dump(mode="json", include={"slide", "tissue", "tiling", "store", "regions"})
        data["regions"].pop("folder")  # where files are found: their bytes are each slide's identity
        if data["regions"] == RegionsConfig().model_dump(mode="json", exclude={"folder"}):
            del data["regions"]  # no regions: the hash of runs made before they existed holds
        for name in SlideConfig.PERFORMANCE_ONLY:
            del data["slide"][name]
        if data["slide"]["modality"] == "brightfield":  # the default before it existed: old hashes hold
            del data["slide"]["modality"]
        return data


SECRET_KEYS = ("storage.options",)  # overrides under these keys may hold credentials


def redact(args: list[str] | tuple[str, ...]) -> list[str]:
    """Command-line words with the values of secret overrides (``storage.options...=``) hidden."""
    return [
        f"{arg.partition('=')[0]}=***" if "=" in arg and arg.startswith(SECRET_KEYS) else arg for arg in args
    ]


def config_hash(config: RunConfig) -> str:
    """Stable hash of the output-relevant configuration (16 hex digits)."""
    canonical = json.dumps(config.output_relevant(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: include loop through {' -> '.join(map(str, seen))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of sections, got {type(data).__name__}")
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict[str, Any] = {}
    for include in includes:
        merged = _deep_merge(merged, _read_yaml(path.parent / include, (*seen, path)))
    return _deep_merge(merged, data)


def _apply_override(data: dict[str, Any], override: str) -> dict[str, Any]:
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"override {override!r} must look like section.key=value, e.g. tiling.tile_size=256"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {override!r}: value is not valid YAML: {err}") from err
    parts = key.strip().split(".")
    update: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        update = {part: update}
    return _deep_merge(data, update)


CLUSTER_PROFILES = Path(__file__).resolve().parent / "cluster_profiles"


def list_cluster_profiles() -> list[str]:
    """Names of the cluster profiles shipped in ``configs/clusters/``."""
    return sorted(p.stem for p in CLUSTER_PROFILES.glob("*.yaml"))


def cluster_profile_path(profile: str | os.PathLike[str]) -> Path:
    """A profile name (``configs/clusters/<name>.yaml``) or a YAML file path."""
    path = Path(profile)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"cluster profile file not found: {path}")
        return path
    named = CLUSTER_PROFILES / f"{profile}.yaml"
    if not named.is_file():
        known = list_cluster_profiles()
        raise ConfigError(
            f"unknown cluster profile {str(profile)!r}; known: {', '.join(known)}"
            f"{did_you_mean(str(profile), known, n=1)} (or give a .yaml path)"
        )
    return named


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    cluster_profile: str | os.PathLike[str] | None = None,
    defaults: dict[str, Any] | None = None,
) -> RunConfig:
    """Load a YAML config (with ``include:`` files merged first), then a cluster profile's
    ``cluster:`` section over it, then ``key=value`` overrides. ``defaults`` (sections of a
    config) lie under all of it: a command's own defaults, where they differ from the models'."""
    data = _deep_merge(defaults or {}, _read_yaml(Path(path)) if path is not None else {})
    if cluster_profile is not None:
        profile = _read_yaml(cluster_profile_path(cluster_profile))
        unexpected = set(profile) - {"cluster"}
        if unexpected:
            raise ConfigError(
                f"{cluster_profile}: a cluster profile holds only a 'cluster:' section, "
                f"not {sorted(unexpected)}"
            )
        data = _deep_merge(data, profile)
    for override in overrides:
        data = _apply_override(data, override)
    source = f"{path}" if path else "defaults"
    if cluster_profile is not None:
        source += f" + cluster profile {cluster_profile}"
    if overrides:
        source += " with --set " + " ".join(redact(overrides))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation(err, source, RunConfig)) from None
