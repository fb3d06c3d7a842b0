"""The content-addressed model store shared by every API dialect (Ollama's on-disk layout)."""
