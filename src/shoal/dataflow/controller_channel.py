"""The coordinator's way in through the controller, for hosts that cannot reach it.

Every job host reaches the controller, even when the client runs behind NAT:
the coordinator also listens on a channel of the controller's relay (named
after its token, see :func:`shoal.dataflow.transport.channel_name`), and hosts
that cannot connect directly come in there for their control link. (Pipes
never come to the coordinator: they are channels between the hosts.)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from shoal.client.channels import ChannelError, ChannelListener
from shoal.client.remote import RemoteClientException
from shoal.client.retry import RECONNECT_DEADLINE, retry_call
from shoal.dataflow.control_link import channel_name

if TYPE_CHECKING:
    from shoal.dataflow.coordinator import Coordinator

log = logging.getLogger("shoal.dataflow")

# How long a channel listener lost with its controller is reopened for.
CHANNEL_DEADLINE = 2 * RECONNECT_DEADLINE


class ControllerChannel:
    """One run's listener on the controller's channel relay, reopened after a
    controller restart."""

    def __init__(self, run: Coordinator) -> None:
        self.run = run
        self._listener: ChannelListener | None = None

    def open(self) -> None:
        """Start listening (retrying while the controller restarts)."""
        self._listener = self._open()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    def _open(self) -> ChannelListener:
        run = self.run
        return retry_call(
            lambda: ChannelListener(
                run.client.endpoint,
                run.call(run.client.token),
                channel_name(run.control_token),
                # the executors of this run's jobs may connect (see Placement.prepare's names)
                experiments=f"dataflow-{run.network.name}-{run.run_id}-",
            ),
            what="listening on the coordinator's channel through the controller",
            retry_on=(ChannelError, RemoteClientException),
            deadline=CHANNEL_DEADLINE,
            stop_event=run.stopping,
        )

    def accept(self) -> None:
        """Hand each host that comes in through the controller to its own thread.

        The listener lives on the controller: when the controller restarts it
        is gone, and it is opened again (hosts placed meanwhile retry their
        connection). If it cannot be for CHANNEL_DEADLINE, the run fails.
        """
        run = self.run
        while not run.stopping.is_set():
            listener = self._listener
            assert listener is not None
            try:
                sock = listener.accept()
            except ChannelError as exc:
                if run.stopping.is_set():
                    return
                log.warning("the channel through the controller closed (%s); reopening it", exc)
                try:
                    self._listener = self._open()
                except (ChannelError, RemoteClientException) as again:
                    if not run.stopping.is_set():
                        run.fail_run(
                            "the channel through the controller was lost and could not be "
                            f"opened again in {CHANNEL_DEADLINE:g} s: {again}"
                        )
                    return
                if run.stopping.is_set():
                    self._listener.close()
                continue
            run.spawn(lambda s=sock: run.control.serve_host(s), "control")
