"""The plugins tempsched ships (installed as ``tempsched_plugins``); each is an ordinary plugin module."""
