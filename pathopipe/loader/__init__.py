"""Loading what a run computed: features, tiles and whole cohorts as lazy arrays.

>>> import pathopipe
>>> run = pathopipe.open_run("OUT")                    # doctest: +SKIP
>>> ds = run.features(run.slide_ids[0], "resnet18")   # xarray.Dataset (tile, feature), lazy
>>> cohort = run.cohort("resnet18")                   # all slides, one lazy array + offsets

PyTorch datasets over a run are in :mod:`pathopipe.loader.torch`.
"""

from pathopipe.loader._cohort import Cohort
from pathopipe.loader._export import export_features, export_formats
from pathopipe.loader._pack import pack_run
from pathopipe.loader._run import Run, open_run

__all__ = ["Cohort", "Run", "export_features", "export_formats", "open_run", "pack_run"]
