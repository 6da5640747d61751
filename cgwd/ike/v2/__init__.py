"""IKEv2 (RFC 7296): codec, negotiation, task manager, exchanges and the session."""
