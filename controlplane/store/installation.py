"""The installation's id: made once, by whichever replica starts first, then read by every other."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controlplane.db.tables import Installation

KEY = "this"


async def ensure(sessions: async_sessionmaker[AsyncSession]) -> str:
    """This installation's id, made now when there is none (two replicas racing: one insert wins)."""
    for _ in range(2):
        async with sessions() as s:
            found = (await s.execute(select(Installation.id).where(Installation.key == KEY))).scalar_one_or_none()
            if found is not None:
                return found
            s.add(Installation(key=KEY, id=uuid.uuid4().hex))
            try:
                await s.commit()
            except IntegrityError:
                await s.rollback()  # another replica made it meanwhile: read theirs
    raise RuntimeError("the installation id could neither be read nor made")
