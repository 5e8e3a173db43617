"""shoal's own client, answering as netUnicorn's ``RemoteClient`` does.

For netUnicorn code moved to shoal's own API by changing its imports, where
that code waits the way netUnicorn's notebooks do::

    from shoal.compat.netunicorn.client import RemoteClient   # was netunicorn.client

    while client.get_experiment_status(name).status != ExperimentStatus.FINISHED:
        time.sleep(1)

netUnicorn has no FAILED or CANCELLED experiment: such a run is FINISHED, and
its deployments say what went wrong. shoal's :class:`shoal.RemoteClient`
reports FAILED and CANCELLED, so a loop like this one would never end there.
This client reports them as FINISHED (the deployments' ``error`` and
``state`` say what happened; ``info.shoal_status`` keeps shoal's status) and
follows netUnicorn's client in two more places: ``healthcheck()`` raises
instead of returning False, and ``cancel_executors()`` returns a str.
Everything else is shoal's client, unchanged.

This module needs nothing of the controller: it imports the client alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from shoal.client.remote import RemoteClient as ShoalRemoteClient
from shoal.client.remote import RemoteClientException
from shoal.model.experiment import ExperimentExecutionInformation

__all__ = ["RemoteClient", "RemoteClientException"]


def as_netunicorn(info: ExperimentExecutionInformation) -> ExperimentExecutionInformation:
    """``info`` with netUnicorn's status (FAILED and CANCELLED become FINISHED);
    shoal's status is kept in ``shoal_status``."""
    info.shoal_status = info.status
    info.status = info.status.as_netunicorn
    return info


class RemoteClient(ShoalRemoteClient):
    """:class:`shoal.RemoteClient` with netUnicorn's statuses and answers (see the module)."""

    def healthcheck(self) -> bool:
        """True if the controller answers and accepts our login; raises
        :class:`RemoteClientException` otherwise, as netUnicorn's client does."""
        if not super().healthcheck():
            raise RemoteClientException(f"the controller at {self.endpoint} is not healthy")
        return True

    def get_experiments(self) -> dict[str, ExperimentExecutionInformation]:
        """Every experiment of the current user, by name, with netUnicorn's statuses."""
        return {name: as_netunicorn(info) for name, info in super().get_experiments().items()}

    def get_experiment_status(self, experiment_id: str) -> ExperimentExecutionInformation:
        """Status, deployments and results; a failed or cancelled run is FINISHED."""
        return as_netunicorn(super().get_experiment_status(experiment_id))

    def wait(
        self, experiment_id: str, timeout: float = 300.0, until: str = "finished"
    ) -> ExperimentExecutionInformation:
        """shoal's :meth:`~shoal.RemoteClient.wait`, answering with netUnicorn's status."""
        return as_netunicorn(super().wait(experiment_id, timeout, until))

    def cancel_executors(  # type: ignore[override]  # netUnicorn's returns a str
        self,
        executors: Iterable[str],
        cancellation_context: dict[str, dict[str, str]] | None = None,
    ) -> str:
        """Stop particular executors; the controller's answer as text, as netUnicorn's."""
        return str(super().cancel_executors(executors, cancellation_context))
