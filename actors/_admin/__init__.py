"""The admin API: the WSGI app (``api.py``), what it reads and does (``source.py``),
its server (``server.py``)."""

__all__: list[str] = []
