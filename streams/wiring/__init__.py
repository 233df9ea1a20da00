"""Factories: build codecs, stages, clients, tools and the process group from Settings (the composition root)."""
