"""smartio.node — the SmartIO system software of one host: the low-level NTB driver, the
segment pool and the host's SISCI state (paper §2.2, §3.3; DESIGN §4.1)."""
