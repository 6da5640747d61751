"""The control interface: protocol (sans-I/O framing), server, client, status schema and
its text rendering. See `cgwd.control.protocol` for the wire format."""
