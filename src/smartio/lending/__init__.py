"""smartio.lending — the device tree drivers use: local functions now, borrowed functions
(shadow devices, paper §4) through the same interface."""

from smartio.lending.device import BarRegion, DmaBuffer, LocalDevice, PciDevice, Vector
from smartio.lending.tree import DeviceTree, FunctionInfo

__all__ = ["BarRegion", "DeviceTree", "DmaBuffer", "FunctionInfo", "LocalDevice", "PciDevice",
           "Vector"]
