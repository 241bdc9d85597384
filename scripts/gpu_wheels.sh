#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (it has Python 3.12 with torch, timm,
# tifffile, opencv, typer, rich, yaml, but no network) into .whl/ (git-ignored), for
# scripts/gpu_check.sh. Run once per session before the device run; carry .whl there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
mkdir -p .whl
packages=(
  zarr==3.1.6 numcodecs==0.16.6 crc32c donfig==0.8.1.post1
  dask==2026.8.0 distributed==2026.8.0 partd==1.4.2 locket==1.0.0 tblib==3.2.2 zict==3.0.0 tornado==6.6.1
  openslide-python==1.4.7 openslide-bin==4.0.1.2 tiffslide==3.0.1 imagecodecs==2026.3.6
  simplejpeg==1.9.0 google-crc32c==1.9.0
  dask-cuda==26.10.0  # its rapids-dask-dependency (a pin of dask) is left out: dask_cuda never imports it
  pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
)
for pkg in "${packages[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d .whl "$pkg"
done
du -sh .whl
