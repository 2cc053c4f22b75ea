"""smartio.cluster — the control plane: host daemons, the program client, the launcher
(DESIGN §4.2). Messages are msgspec structs over ZeroMQ; there is no central server."""
