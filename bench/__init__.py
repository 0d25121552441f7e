"""Benchmarks: livedash against a naive Quart server and nginx + Nchan (``python -m bench.run``)."""
