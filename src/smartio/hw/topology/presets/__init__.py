"""Built-in topology presets: the paper's testbeds as TOML files shipped with the package."""
