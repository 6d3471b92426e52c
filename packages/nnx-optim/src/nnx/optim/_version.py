"""The version of nnx-optim: the one place it is written (read by hatchling at build time)."""

__version__ = "0.1.0"
