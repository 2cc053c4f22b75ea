"""PCI functions as silicon: configuration space, capabilities (DESIGN §3.5)."""
