"""smartio.hw — the emulated silicon: topology, address spaces, NTBs, IOMMUs, translation.

This layer knows nothing of SmartIO software and imports nothing above it (DESIGN §2).
"""
