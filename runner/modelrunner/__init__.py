"""modelrunner: one server for the Ollama, Docker Model Runner and OpenAI APIs over llama.cpp."""

__version__ = "0.1.0"
