"""Pipeline stages as plain functions on plain values; they know nothing about Dask."""
