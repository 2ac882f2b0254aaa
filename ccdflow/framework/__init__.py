"""The engine: plugins, steps, configs, frame metadata, FITS I/O and combining."""
