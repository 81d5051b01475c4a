"""Control plane for running customers' scripts in hardened, single-use sandboxes."""

__version__ = "0.1.0"
