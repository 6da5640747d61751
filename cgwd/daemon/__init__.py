"""The cgwd daemon: the asyncio host, tunnel supervisors, systemd notify and logging."""
