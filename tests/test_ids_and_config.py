import pytest

from pathopipe.config import RunConfig, config_hash, load_config
from pathopipe.discovery import find_slides
from pathopipe.errors import ConfigError
from pathopipe.ids import slide_ids


def test_ids_are_safe_and_unique():
    paths = [
        "/data/a/x.svs",
        "/data/b/x.svs",
        "/data/c/../../etc/passwd",
        "/d/s p ä.ome.tiff",
        "/d/.hidden.svs",
    ]
    ids = slide_ids(paths)
    assert len(set(ids)) == len(ids)
    assert ids[0].startswith("x-") and ids[1].startswith("x-") and ids[0] != ids[1]
    assert ids == slide_ids(paths)  # deterministic
    assert ids[3] == "s_p"  # spaces and non-ASCII replaced, '.ome.tiff' removed whole
    assert ids[4] == "hidden"
    for sid in ids:
        assert "/" not in sid and not sid.startswith(".") and ".." not in sid.strip(".")


def test_find_slides(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.svs").write_bytes(b"")
    (tmp_path / "b.tiff").write_bytes(b"")
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.svs").write_bytes(b"")
    found = find_slides([tmp_path])
    assert [p.name for p in found] == ["b.tiff", "a.svs"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no slides found"):
        find_slides([tmp_path / "empty"])
    assert [p.name for p in find_slides([tmp_path / "readme.txt"])] == ["readme.txt"]  # named: taken


def test_config_yaml_include_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("tiling:\n  tile_size: 256\n  target_mpp: 1.0\n")
    (tmp_path / "run.yaml").write_text(
        "include: [base.yaml]\ntiling:\n  target_mpp: 0.5\nstore: {codec: zstd}\n"
    )
    cfg = load_config(tmp_path / "run.yaml", ["store.tiles_per_shard=64"])
    assert (cfg.tiling.tile_size, cfg.tiling.target_mpp, cfg.store.codec) == (256, 0.5, "zstd")
    assert cfg.store.tiles_per_shard == 64
    assert config_hash(cfg) != config_hash(RunConfig())
    # the cluster does not change what is written, so not the hash either
    assert config_hash(load_config(None, ["cluster.n_workers=7"])) == config_hash(RunConfig())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tiling.tile_szie=256", "did you mean 'tiling.tile_size'"),
        ("tilling.tile_size=256", "did you mean 'tiling'"),
        ("store.codec=png", "'jpeg', 'zstd' or 'none'"),
        ("tiling.min_tissue_fraction=2", "less than or equal to 1"),
        ("slide.backend=bioformats", "allowed: auto, openslide, tiff, tiffslide"),
        ("nokey", "section.key=value"),
    ],
)
def test_config_errors_name_key_and_allowed_values(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert message in str(caught.value)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "code.yaml").write_text("tiling: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "code.yaml")


def test_configuration_docs_are_current():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "gen_config_docs.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_shard_size_spreads_small_slides_and_caps_large_ones():
    store = RunConfig().store  # at most 1024 tiles per shard, at least 8 shards down to 32 tiles
    assert store.shard_size(50_000) == 1024  # 49 files for a 50k-tile slide
    assert store.shard_size(1_000) == 125  # 8 tasks
    assert store.shard_size(100) == 32
    assert store.shard_size(3_878) == 485  # 8 tasks
    assert store.shard_size(20) == 20  # never larger than the slide
    assert store.shard_size(0) == 1


def test_every_workflow_and_cluster_profile_loads():
    from pathlib import Path

    from pathopipe.config import list_cluster_profiles
    from pathopipe.features import resolve_model

    repo = Path(__file__).resolve().parents[1]
    workflows = sorted((repo / "workflows").glob("*.yaml"))
    assert {w.stem for w in workflows} >= {"demo", "tile-only", "clam-resnet50", "multi-model"}
    for workflow in workflows:
        cfg = load_config(workflow)
        for name in cfg.features.models:
            resolve_model(name)
    assert list_cluster_profiles() == ["address", "kubernetes", "local", "local-cuda", "slurm"]
    for profile in list_cluster_profiles():
        assert load_config(repo / "workflows" / "demo.yaml", cluster_profile=profile).cluster.kind == profile
    slurm = load_config(None, ["cluster.slurm.maximum_jobs=8"], cluster_profile="slurm")
    assert slurm.cluster.slurm.maximum_jobs == 8 and slurm.cluster.slurm.cores == 2
    with pytest.raises(ConfigError, match="did you mean 'local-cuda'"):
        load_config(None, cluster_profile="local-cude")
    bad = repo / "pyproject.toml"
    with pytest.raises(ConfigError, match="cluster profile file not found"):
        load_config(None, cluster_profile=bad.with_suffix(".yaml"))


def test_slide_lists_and_globs(tmp_path):
    for name in ("a.svs", "b.svs", "sub/c.tif"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listing = tmp_path / "list.csv"
    listing.write_text("slide_id,path\nA,a.svs\nC,sub/c.tif\n")
    assert [p.name for p in find_slides([listing])] == ["a.svs", "c.tif"]
    assert [p.name for p in find_slides([str(tmp_path / "**" / "*.tif")])] == ["c.tif"]
    with pytest.raises(ConfigError, match="matches no file"):
        find_slides([str(tmp_path / "*.ndpi")])
    (tmp_path / "bad.csv").write_text("file\na.svs\n")
    with pytest.raises(ConfigError, match="column named one of path"):
        find_slides([tmp_path / "bad.csv"])


def test_storage_credentials_never_leave_the_config():
    import json

    from pathopipe.config import redact

    secret = "s3cr3t-value-91"
    cfg = load_config(
        None, [f"storage.options.secret={secret}", "storage.options.endpoint_url=http://h:9000"]
    )
    assert cfg.storage.options == {"secret": secret, "endpoint_url": "http://h:9000"}
    assert cfg.slide.reader_options(cfg.storage)["tiff"]["storage_options"]["secret"] == secret
    assert secret not in json.dumps(cfg.model_dump(mode="json")) and secret not in repr(cfg)
    words = ["pathopipe", "run", "--set", f"storage.options.secret={secret}", "tiling.tile_size=256"]
    assert redact(words) == [
        "pathopipe",
        "run",
        "--set",
        "storage.options.secret=***",
        "tiling.tile_size=256",
    ]
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"storage.options.secret={secret}", "tiling.tile_szie=3"])
    assert secret not in str(err.value) and "storage.options.secret=***" in str(err.value)
