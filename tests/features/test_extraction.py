"""Feature extraction with real timm models (random weights), real Dask workers and stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from pathopipe.config import load_config
from pathopipe.errors import UnknownNameError
from pathopipe.features import ExtractionSettings, WeightsError, create_extractor, resolve_model
from pathopipe.parallel import tile_slides
from pathopipe.parallel.extraction import extract_features, jobs_from_out
from pathopipe.stages.extraction import extract_rows, feature_status, prepare_features


def _reference_features(model_name: str, tiles: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """An independent forward pass: timm model with the same seed, torchvision-style preprocessing."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(model_name, pretrained=False, num_classes=0).eval()
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return model((x - mean) / std).numpy()


@pytest.fixture(scope="module")
def tiled_out(tmp_path_factory, dask_client, aperio_slide, generic_slide):
    out = tmp_path_factory.mktemp("extract")
    cfg = load_config(None, ["tiling.target_mpp=1.0", "store.codec=zstd", "tiling.min_tissue_fraction=0.3"])
    result = tile_slides([aperio_slide.path, generic_slide.path], out, cfg, client=dask_client)
    assert all(r.status == "done" for r in result.records)
    return out


def _settings(name="timm/resnet18", **kw) -> ExtractionSettings:
    options = {"weights": "random", **kw}  # random weights asked for (the default is pretrained)
    return ExtractionSettings(model=resolve_model(name), device="cpu", batch_size=16, **options)


def test_features_equal_a_direct_forward_pass(tiled_out, dask_client):
    settings = _settings(feature_dtype="float32")
    result = extract_features(tiled_out, settings, client=dask_client)
    assert [r.status for r in result.records] == ["done", "done"]
    for job in jobs_from_out(tiled_out):
        group = zarr.open_group(job.store, mode="r")
        features = group["features/timm-resnet18/features"][:]
        tiles = group["tiles"][:]
        assert features.shape == (group["coords"].shape[0], 512)
        reference = _reference_features("resnet18", tiles)
        np.testing.assert_allclose(features, reference, rtol=1e-4, atol=1e-4)  # fp32 on CPU
        attrs = group["features/timm-resnet18"].attrs
        assert attrs["complete"] is True and attrs["embedding_dim"] == 512
        assert attrs["weights"]["kind"] == "random" and attrs["normalisation"]["mean"][0] == 0.485
    again = extract_features(tiled_out, settings, client=dask_client)
    assert [r.status for r in again.records] == ["skipped", "skipped"]


def test_rerun_gives_identical_float16_features(tiled_out, dask_client):
    settings = _settings()
    refused = extract_features(tiled_out, settings, client=dask_client)  # float32 ones exist
    assert refused.records[0].status == "failed" and "--force" in refused.records[0].error
    first = extract_features(tiled_out, settings, client=dask_client, force=True)
    store = jobs_from_out(tiled_out)[0].store
    a = zarr.open_array(f"{store}/features/timm-resnet18/features")[:]
    assert a.dtype == np.float16 and first.records[0].status == "done"
    extract_features(tiled_out, settings, client=dask_client, force=True)
    b = zarr.open_array(f"{store}/features/timm-resnet18/features")[:]
    np.testing.assert_array_equal(a, b)


def test_half_written_features_are_redone_and_never_complete(tiled_out, dask_client):
    settings = _settings("timm/resnet18", seed=3)
    job = jobs_from_out(tiled_out)[0]
    plan = prepare_features(job, (settings,), force=True)
    ranges = plan.ranges()
    extract_rows(plan, *ranges[0])  # a task ran, then the run died before finishing
    status = feature_status(job, "timm-resnet18")
    assert status.exists and not status.complete
    result = extract_features(tiled_out, settings, client=dask_client)
    assert result.records[0].status == "done"
    assert feature_status(job, "timm-resnet18").complete


def test_resnet50_trunc_is_1024_d_and_tiles_are_resized(tmp_path, dask_client, generic_slide):
    cfg = load_config(None, ["tiling.target_mpp=1.0", "tiling.tile_size=256"])
    tile_slides([generic_slide.path], tmp_path, cfg, client=dask_client)
    result = extract_features(tmp_path, _settings("resnet50_trunc"), client=dask_client)
    record = result.records[0]
    assert (
        record.status == "done"
        and "resnet50_trunc: tiles of 256 px resized to the model's 224 px" in record.warnings
    )
    group = zarr.open_group(tmp_path / "slides" / "generic.zarr", mode="r")
    assert group["features/resnet50_trunc/features"].shape == (group["coords"].shape[0], 1024)


def test_model_and_weights_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="resnet50_trunc"):
        resolve_model("resnet50_trnc")
    with pytest.raises(UnknownNameError, match="timm/resnet50"):
        resolve_model("timm/resnet5O")
    # pretrained weights that are not in the (empty) local hub cache: a clear error, no download
    with pytest.raises(WeightsError, match="not in the Hugging Face cache"):
        create_extractor("uni", weights="pretrained")
    # a weights file for another architecture is refused, never partially loaded
    import timm
    from safetensors.torch import save_file

    path = tmp_path / "resnet18.safetensors"
    save_file(timm.create_model("resnet18", num_classes=0).state_dict(), str(path))
    with pytest.raises(WeightsError, match="do not fit") as caught:
        create_extractor("timm/resnet34", weights=str(path))
    assert "missing" in str(caught.value)
    extractor = create_extractor("timm/resnet18", weights=str(path))  # the right one loads
    assert extractor.weights.kind == "file" and len(extractor.weights.sha256) == 64


def test_weights_file_loads_exactly(tmp_path):
    import timm

    torch.manual_seed(42)
    model = timm.create_model("resnet18", num_classes=1000)  # with a classifier head: dropped
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pth")
    extractor = create_extractor("timm/resnet18", weights=str(tmp_path / "w.pth"), seed=0)
    tiles = np.random.default_rng(0).integers(0, 255, (3, 224, 224, 3), dtype=np.uint8)
    model.reset_classifier(0)
    model.eval()
    x = (
        torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
        - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    ) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        np.testing.assert_allclose(extractor(tiles), model(x).numpy(), rtol=1e-4, atol=1e-4)


def test_missing_pretrained_weights_fail_before_any_work(tiled_out):
    settings = _settings("uni", weights="pretrained")
    with pytest.raises(WeightsError, match="huggingface-cli download MahmoodLab/uni"):
        extract_features(tiled_out, settings)


def test_streaming_from_the_slide_equals_stored_zstd_tiles(tmp_path, dask_client, generic_slide):
    common = ["tiling.target_mpp=1.0", "tiling.min_tissue_fraction=0.3"]
    stored, streamed = tmp_path / "stored", tmp_path / "streamed"
    tile_slides(
        [generic_slide.path], stored, load_config(None, [*common, "store.codec=zstd"]), client=dask_client
    )
    tile_slides(
        [generic_slide.path], streamed, load_config(None, [*common, "store.codec=none"]), client=dask_client
    )
    settings = _settings(feature_dtype="float32")
    for out in (stored, streamed):
        assert extract_features(out, settings, client=dask_client).records[0].status == "done"
    a = zarr.open_group(stored / "slides" / "generic.zarr", mode="r")
    b = zarr.open_group(streamed / "slides" / "generic.zarr", mode="r")
    assert "tiles" not in b and b["features/timm-resnet18"].attrs["streamed_from_slide"] is True
    np.testing.assert_array_equal(a["coords"][:], b["coords"][:])
    np.testing.assert_array_equal(
        a["features/timm-resnet18/features"][:], b["features/timm-resnet18/features"][:]
    )
    # decoding each batch on several threads (GPU workers' default) changes nothing
    reference = a["features/timm-resnet18/features"][:]
    for out in (stored, streamed):
        threaded = _settings(feature_dtype="float32", decode_threads=3)
        result = extract_features(out, threaded, client=dask_client, force=True)
        assert result.records[0].status == "done"
        features = zarr.open_group(out / "slides" / "generic.zarr" / "features" / "timm-resnet18", mode="r")
        assert features.attrs["decode_threads"] == 3
        np.testing.assert_array_equal(features["features"][:], reference)


@pytest.mark.slow
def test_gpu_tasks_run_only_on_workers_offering_gpu(tiled_out):
    """Placement on CPU: one plain worker, one started as users do with `--resources GPU=1`."""
    import os
    import subprocess
    import sys

    from pathopipe.config import ClusterConfig
    from pathopipe.errors import ConfigError
    from pathopipe.parallel import local_client

    settings = _settings(gpu_resource=True, seed=5)  # device cpu, placed as GPU work
    with local_client(ClusterConfig(n_workers=1, dashboard=False)) as client:
        with pytest.raises(ConfigError, match="GPU=1"):
            extract_features(tiled_out, settings, client=client)
        address = client.scheduler.address
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--resources", "GPU=1", "--no-dashboard", "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client.wait_for_workers(2, timeout=60)
            infos = client.scheduler_info(n_workers=-1)["workers"]
            gpu_worker = next(a for a, w in infos.items() if w.get("resources", {}).get("GPU"))
            gpu_pid = client.run(os.getpid, workers=[gpu_worker])[gpu_worker]
            result = extract_features(tiled_out, settings, client=client, force=True)
            assert {r.status for r in result.records} == {"done"}
            for job in jobs_from_out(tiled_out):
                attrs = zarr.open_group(f"{job.store}/features/timm-resnet18", mode="r").attrs
                assert attrs["worker_pids"] == [gpu_pid]
        finally:
            worker.terminate()
            worker.wait(timeout=30)


def test_several_models_in_one_pass_equal_separate_runs(tmp_path, dask_client, generic_slide):
    cfg = load_config(None, ["tiling.target_mpp=1.0", "store.codec=zstd", "tiling.min_tissue_fraction=0.3"])
    together, apart = tmp_path / "together", tmp_path / "apart"
    for out in (together, apart):
        tile_slides([generic_slide.path], out, cfg, client=dask_client)
    a = _settings("timm/resnet18", feature_dtype="float32")
    b = _settings("timm/vit_small_patch16_224", feature_dtype="float32")
    result = extract_features(together, [a, b], client=dask_client)
    assert result.records[0].status == "done"
    for settings in (a, b):
        extract_features(apart, settings, client=dask_client)
    for key in ("timm-resnet18", "timm-vit_small_patch16_224"):
        one = zarr.open_group(together / "slides" / "generic.zarr" / "features" / key, mode="r")
        two = zarr.open_group(apart / "slides" / "generic.zarr" / "features" / key, mode="r")
        assert one.attrs["models_in_pass"] == ["timm-resnet18", "timm-vit_small_patch16_224"]
        np.testing.assert_array_equal(one["features"][:], two["features"][:])
    # rerun: both complete -> skipped; one model added -> only that one is computed
    assert extract_features(together, [a, b], client=dask_client).records[0].status == "skipped"
    c = _settings("noop")
    again = extract_features(together, [a, c], client=dask_client)
    attrs = zarr.open_group(together / "slides" / "generic.zarr" / "features" / "noop", mode="r").attrs
    assert again.records[0].status == "done" and attrs["models_in_pass"] == ["noop"]


def test_compiled_model_equals_eager_for_full_and_partial_batches():
    """``--compile``: torch.compile (inductor, CPU) gives the eager features; a smaller last batch
    is padded to the compiled shape, not recompiled."""
    eager = create_extractor("timm/test_resnet", seed=3)
    compiled = create_extractor("timm/test_resnet", seed=3, compile=True)
    size = eager.spec.input_size
    tiles = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    for batch in (tiles, tiles[:3]):
        np.testing.assert_allclose(compiled(batch), eager(batch), rtol=1e-4, atol=1e-5)
    assert compiled.compiled and compiled._largest_batch == 4


@pytest.mark.parametrize(("precision", "rtol"), [("bf16", 0.1), ("fp16", 0.02)])
def test_autocast_precisions_on_cpu_stay_close_to_fp32(precision, rtol):
    """``--precision bf16|fp16``: CPU autocast. Measured against fp32 on resnet18 (max |difference|
    relative to the features' mean |value|): bf16 0.035, fp16 0.0042; cosine >= 0.9999. The
    features' attributes record what ran."""
    tiles = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    reference = create_extractor("timm/resnet18", seed=3)(tiles)
    extractor = create_extractor("timm/resnet18", seed=3, precision=precision)
    features = extractor(tiles)
    scale = np.abs(reference).mean()
    assert np.abs(features - reference).max() < rtol * scale
    cosine = (
        (features * reference).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(reference, axis=1)
    )
    assert cosine.min() > 0.999
    assert not np.array_equal(features, reference)  # autocast really ran in lower precision
    assert extractor.describe()["precision"] == precision


def test_channels_last_gives_the_contiguous_models_features():
    """The extractor runs models channels-last; the same model run in the default layout on the
    same tensors agrees to float rounding."""
    import timm
    import torch

    extractor = create_extractor("timm/resnet18", seed=3)
    tiles = np.random.default_rng(1).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        plain = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    with torch.inference_mode():
        x = extractor.preprocess(tiles).contiguous()  # NCHW, the default layout
        expected = plain(x).numpy()
    np.testing.assert_allclose(extractor(tiles), expected, rtol=1e-4, atol=1e-5)


def test_noop_needs_no_weights_even_when_pretrained_is_asked():
    """'noop' has no parameters: pretrained (the default) is not an error for it (the data-path
    benchmarks build it from default settings)."""
    extractor = create_extractor("noop", weights="pretrained", device="cpu")
    assert extractor.weights.kind == "random"
    assert extractor(np.zeros((2, 224, 224, 3), np.uint8)).shape == (2, 3)
