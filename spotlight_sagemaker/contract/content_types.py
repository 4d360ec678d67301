"""The content types the serving container speaks, named once for both sides.

The client (transformer defaults, the predictor) and the container (the codec's ``DECODERS``
and ``ENCODERS``) import these names; the codec's tables decide what is supported.
"""

from __future__ import annotations

JSONLINES = "application/jsonlines"
JSON = "application/json"
CSV = "text/csv"
#: The response format of the workload: ``user_id,item_id,score`` rows, best first.
DEFAULT_ACCEPT = CSV
#: The request format Batch Transform jobs send by default: one JSON object per line.
DEFAULT_REQUEST = JSONLINES


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``"Application/JSON; charset=UTF-8"`` -> ``("application/json", {"charset": "utf-8"})``."""
    parts = (header or "").split(";")
    params = {}
    for p in parts[1:]:
        key, _, value = p.partition("=")
        params[key.strip().lower()] = value.strip().strip('"').lower()
    return parts[0].strip().lower(), params
