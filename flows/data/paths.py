"""Where dataset files live: $NFLAB_DATA, else $NFLAB_HOME/data, else ./.nflab/data."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_root() -> Path:
    """Return the data root: env NFLAB_DATA, else $NFLAB_HOME/data, else ./.nflab/data."""
    data = os.environ.get("NFLAB_DATA")
    if data:
        return Path(data).expanduser()
    home = os.environ.get("NFLAB_HOME")
    if home:
        return Path(home).expanduser() / "data"
    return Path(".nflab") / "data"
