"""What every use case holds."""

from __future__ import annotations

from collections.abc import Mapping

from overcast.controller.access import Caller
from overcast.core.clock import Clock
from overcast.jobs.engine import Creator, JobEngine
from overcast.store.base import Store

# Label or annotation changes of a PATCH: None leaves metadata alone; a None value deletes a key.
MetadataPatch = Mapping[str, str | None] | None


class UseCase:
    def __init__(self, store: Store, clock: Clock, engine: JobEngine) -> None:
        self.store = store
        self.clock = clock
        self.engine = engine

    @staticmethod
    def creator(caller: Caller) -> Creator:
        return Creator(guid=caller.identity.guid, name=caller.identity.name)
