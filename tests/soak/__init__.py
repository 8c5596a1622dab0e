"""Soak test: the ASGI middleware under sustained mixed load on a real server."""
