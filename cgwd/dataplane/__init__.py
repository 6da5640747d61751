"""Datapaths that carry ESP for the tunnels: the `Dataplane` seam and its implementations."""
