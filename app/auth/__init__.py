"""Who is calling and what they may do: access map, guard, tokens, sessions, limits, audit."""
