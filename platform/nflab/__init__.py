"""nflab — a platform for normalizing-flow research at scale (control plane: CLI, settings, stores)."""

__version__ = "0.1.0"
