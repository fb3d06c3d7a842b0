"""The Docker Model Runner dialect (``/models/*``, ``/engines/*``)."""
