"""The OpenAI dialect (``/v1/*``, also under ``/engines/v1`` and ``/engines/llama.cpp/v1``)."""
