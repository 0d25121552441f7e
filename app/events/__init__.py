"""The event log and its views: events, topics, the log, the hub, the reader, SSE framing."""
