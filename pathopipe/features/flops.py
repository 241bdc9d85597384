"""The compute of a model per tile, counted (for the report's what-if estimates)."""

from __future__ import annotations

from pathopipe.features._spec import ModelSpec

__all__ = ["model_gflops"]


def model_gflops(spec: ModelSpec) -> float | None:
    """GFLOPs of one image through a preset's model and output head (2 x multiply-adds, counted
    with ``torch.utils.flop_counter`` on the meta device: nothing is allocated or run), or None
    when the model cannot be built."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from pathopipe.features._extractor import NOOP, FeatureHead, build_model

        if spec.architecture == NOOP:
            return 0.0
        with torch.device("meta"):
            head = FeatureHead(build_model(spec), spec.output, spec.library).eval()
            x = torch.empty(1, 3, spec.input_size, spec.input_size)
        with FlopCounterMode(display=False) as counter:
            head(x)
        return float(counter.get_total_flops()) / 1e9
    except Exception:  # noqa: BLE001 (an estimate only; absent when the model cannot be built)
        return None
