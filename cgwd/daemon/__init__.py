"""The cgwd daemon (`cgwd run`).

- `app`: the process: start-up, IKE hosts, tunnels, events to routes, status, shutdown.
- `supervisor`: one tunnel's live state and the pure decisions (state, MTU/MSS, routes).
- `sessions`: a tunnel plan as the IKEv2/IKEv1 session policy (DPD, rekey, backoff).
- `status`: the ``status`` document; `control`: the control methods; `reload`: SIGHUP.
- `notify`: systemd's notify protocol and watchdog; `logging`, `log_fields`: journald.
"""
