"""cgwd: the on-premises customer gateway for AWS Site-to-Site VPN."""

__version__ = "0.1.0"
