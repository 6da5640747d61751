"""IKEv2 exchange tasks: one module per exchange, initiator task and responder handler."""
