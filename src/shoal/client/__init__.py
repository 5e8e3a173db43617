"""The client library: RemoteClient over HTTP, and local clusters for one machine."""
