"""HTTP dialects: thin adapters that parse a wire format, call the core and render its answer."""
