"""Device models: software PCIe functions that run in device engines (DESIGN §3.5).

Each model implements :class:`~smartio.hw.devices.base.DeviceModel` and talks to the world
only through a :class:`~smartio.hw.devices.base.DeviceContext`: its BAR memory, its config
space, DMA through the fabric, and interrupts.
"""
