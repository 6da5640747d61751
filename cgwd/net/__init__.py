"""Host networking that is not ESP: interface addresses, routes, rp_filter, MSS clamp.

`base.NetOps` is the seam; `pyroute.PyrouteNetOps` the kernel implementation,
`fake.FakeNetOps` the in-memory one; `routes` plans failover/ECMP routes; `nft` builds the
MSS clamp document.
"""
