"""Everything that talks to Redis as storage: clients, key names, the embedded server, Lua scripts."""
