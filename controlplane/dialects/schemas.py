"""What the dialects' typed answers share: a seed's own field names, taken as they are.

The seeds name their fields in their own ways (``jobid``, ``AD_PInstance_ID``, ``model-name``,
``created_at``), so these models use no alias generator: a field's alias is the seed's name. A dialect
builds its answers as these models and dumps them with ``seed_json``; ``exclude_unset`` keeps a field the
seed leaves out of an answer out of it, so one model serves the paths that answer more or fewer fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class SeedModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


def seed_json(model: BaseModel | list[Any]) -> Any:
    """The JSON value of an answer: the seed's names, only the fields that were set."""
    if isinstance(model, list):
        return [seed_json(m) for m in model]
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)
