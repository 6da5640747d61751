"""A local emulation of the AWS side: strongSwan in network namespaces.

Used by the tests, by `cgwd lab` for rehearsal, and by `make demo`.
"""
