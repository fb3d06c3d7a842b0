"""OCI distribution client: pull and push models from and to any registry."""
