"""Settings shared by the experiment files in this folder."""

SERVER_PORT = 20000
