"""pathopipe: whole-slide images to tiles and features in Zarr, as one Dask computation."""

__version__ = "0.1.0"
