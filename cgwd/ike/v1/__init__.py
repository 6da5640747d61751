"""IKEv1 (RFC 2408/2409) Main Mode and Quick Mode with pre-shared keys, sans-I/O."""
