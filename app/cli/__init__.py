"""The ``livedash`` command."""
