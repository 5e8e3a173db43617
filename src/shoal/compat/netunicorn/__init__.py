"""netUnicorn's HTTP API on shoal: its client, executor and task library run unchanged.

- ``server``: the client-facing API and the executors' gateway, mounted on the
  controller under ``/netunicorn`` (``NETUNICORN_ENDPOINT=http://host:port/netunicorn``).
- ``task``: the shoal task that runs one netUnicorn executor on a node.

Nothing is imported here: agents load ``task`` without the server's modules.
"""
