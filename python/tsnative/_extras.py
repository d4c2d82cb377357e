"""How to install an optional part (an extra of pyproject.toml) in a form that works: tsnative is
installed from its source folder, so `pip install 'tsnative[onnx]'` would look for it on a
package index; the extra's own requirements, read from the installed metadata, install
anywhere."""

from __future__ import annotations

import importlib.metadata
import re


def install_hint(extra: str) -> str:
    """e.g. "pip install 'onnxruntime>=1.20' 'onnx>=1.17' 'onnxscript>=0.5'"."""
    marker = re.compile(rf"""^(.*?)\s*;\s*extra\s*==\s*["']{re.escape(extra)}["']\s*$""")
    try:
        requirements = importlib.metadata.requires("tsnative") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        requirements = []
    wanted = [found.group(1) for line in requirements if (found := marker.match(line))]
    if not wanted:
        return f"install tsnative's {extra!r} extra (pyproject.toml lists what it needs)"
    return "pip install " + " ".join(f"'{requirement}'" for requirement in wanted)
