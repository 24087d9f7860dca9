"""The operator's view: the admin API (JSON over HTTP) and the dashboard page."""
