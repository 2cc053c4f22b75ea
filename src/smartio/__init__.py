"""smartio — SmartIO device sharing and memory disaggregation on an emulated PCIe/NTB fabric.

The package follows the layers of docs/architecture.md: ``smartio.hw`` is the emulated
silicon (topology, address spaces, NTBs, IOMMUs, translation); everything above it is the
SmartIO software of Markussen et al. (ACM TOCS 2021).
"""

from smartio.errors import SmartIOError

__all__ = ["SmartIOError", "__version__"]
__version__ = "0.1.0"
