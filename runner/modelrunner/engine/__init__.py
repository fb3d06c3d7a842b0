"""Inference engines behind one small interface, and prompt rendering (templates, tools)."""
