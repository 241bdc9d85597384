"""Commands that describe what pathopipe has and sees: info (a slide), backends (every registry), models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from pathopipe.cli._common import app, console, fail, setup_logging
from pathopipe.errors import PathopipeError


@app.command()
def info(
    slide: Annotated[Path, typer.Argument(help="slide file")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    backend: Annotated[str, typer.Option(help="auto or a slide backend (`pathopipe backends`)")] = "auto",
    properties: Annotated[bool, typer.Option(help="include all backend properties")] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="show the readers' own log messages")
    ] = False,
) -> None:
    """Print a slide's metadata: size, levels, resolution, vendor, backend."""
    setup_logging(verbose)
    from pathopipe.slide import open_slide

    try:
        with open_slide(slide, backend=backend) as reader:
            data = reader.info.to_dict(with_properties=properties)
    except PathopipeError as err:
        raise fail(str(err)) from None
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table(title=str(slide), show_header=False)
    for key in (
        "backend",
        "vendor",
        "dimensions",
        "mpp_x",
        "mpp_y",
        "mpp_source",
        "mpp_rejected",
        "objective_power",
    ):
        table.add_row(key, str(data[key]))
    for i, (dims, ds) in enumerate(zip(data["level_dimensions"], data["level_downsamples"], strict=True)):
        table.add_row(f"level {i}", f"{dims[0]} x {dims[1]}  (downsample {ds:.4g})")
    console.print(table)


@app.command()
def backends() -> None:
    """List every pluggable part: slide backends (in the order `auto` tries them), tissue
    detectors, tile codecs, cluster kinds and profiles, model presets; with the extra each needs."""
    from pathopipe.config import list_cluster_profiles, load_config
    from pathopipe.features import model_presets
    from pathopipe.parallel.cluster import cluster_kinds
    from pathopipe.slide import slide_backends
    from pathopipe.slide._registry import auto_order
    from pathopipe.store.tile_codecs import tile_codecs
    from pathopipe.tissue import tissue_detectors

    table = Table("kind", "name", "needs", "description")

    def rows(kind: str, registry: Any, describe: Any = None) -> None:
        for entry in registry:
            needs = escape(f"[{entry.extra}] extra") if entry.extra else ""
            if entry.plugin:
                needs = f"plug-in {entry.plugin}"
            table.add_row(kind, entry.name, needs, describe(entry) if describe else entry.description)

    order = auto_order()
    backends_in_order = sorted(slide_backends, key=lambda e: order.index(e.name))

    def backend(entry: Any) -> str:
        local = "" if entry.metadata.get("urls") else "; local files only"
        return f"{entry.description} (auto: #{order.index(entry.name) + 1}{local})"

    rows("slide backend", backends_in_order, backend)
    rows("tissue detector", tissue_detectors)
    rows("tile codec", tile_codecs)
    rows("cluster kind", cluster_kinds)
    for profile in list_cluster_profiles():
        kind = load_config(None, cluster_profile=profile).cluster.kind
        table.add_row("cluster profile", profile, "", f"--cluster {profile}: kind {kind}")
    rows("model preset", model_presets)
    console.print(table)
    console.print(
        "Cluster profiles: configs/clusters/<name>.yaml, or give --cluster a .yaml path", highlight=False
    )
    console.print(
        "Any timm model also works as a model: --model timm/<name> (`pathopipe models`)", highlight=False
    )


@app.command()
def models(
    details: Annotated[
        str | None, typer.Option("--details", help="every field of one preset: KEY, timm/<name> or a .yaml")
    ] = None,
) -> None:
    """List the feature extractor presets (any timm model also works as timm/<name>)."""
    from pathopipe.features import model_presets, resolve_model

    if details is not None:
        try:  # a preset as written (one completed from its hub config needs the cache)
            spec = model_presets.get(details) if details in model_presets else resolve_model(details)
        except PathopipeError as err:
            raise fail(str(err)) from None
        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column("field", no_wrap=True, style="bold")
        table.add_column("value", overflow="fold")
        for name, value in spec.model_dump(mode="json").items():
            table.add_row(name, "-" if value in (None, "", {}) else escape(str(value)))
        console.print(table)
        return
    from rich.padding import Padding

    for spec in (entry.obj for entry in model_presets):
        console.print(f"[bold]{spec.key}[/bold]  {spec.description}", highlight=False)
        if spec.pretrained_hub_id:
            where = f"{spec.pretrained_hub_id} (local hub cache)"
        else:
            where = f"{spec.pretrained_url} (torch hub's checkpoints)" if spec.pretrained_url else "-"
        about = (f"{spec.library} {spec.architecture}, output {spec.output}, input {spec.input_size} px\n"
                 f"pretrained: {where}\nlicence: {spec.licence or '-'}")  # fmt: skip
        console.print(Padding(escape(about), (0, 0, 0, 4)), highlight=False)
    console.print("Any timm model: --model timm/<name>, e.g. timm/resnet50, timm/vit_small_patch16_224")
