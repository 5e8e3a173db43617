"""netUnicorn's HTTP API on shoal: its client, executor and task library run unchanged.

- ``server``: the client-facing API and the executors' gateway, mounted on the
  controller under ``/netunicorn`` (``NETUNICORN_ENDPOINT=http://host:port/netunicorn``).
- ``task``: the shoal task that runs one netUnicorn executor on a node.
- ``client``: not this API, but shoal's own client answering as netUnicorn's
  does (FAILED and CANCELLED runs show as FINISHED), for netUnicorn code
  moved to shoal's own API.

Nothing is imported here: agents load ``task`` without the server's modules.
"""
