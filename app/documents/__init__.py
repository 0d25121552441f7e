"""Versioned documents (annotations, alert rules): atomic version checks in Lua."""
