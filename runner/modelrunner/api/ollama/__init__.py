"""The Ollama dialect (``/api/*``)."""
