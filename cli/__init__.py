"""Command-line entry points `bm` and `rl`: thin click wrappers over the Python API."""
