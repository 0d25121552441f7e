"""Peers livedash is measured against."""
