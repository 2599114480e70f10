"""Ferrule: serve a Python WSGI application with mod_wsgi-express's command line, no Apache."""

from ferrule._ferrule import RequestTimeout, __version__

__all__ = ["RequestTimeout", "__version__"]
