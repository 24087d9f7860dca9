"""An app whose import fails, for ``postroom worker`` tests."""

raise RuntimeError("the app's own bug")
