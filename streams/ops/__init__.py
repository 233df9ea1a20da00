"""Operator tools over the topics: the demo, replays into a shadow run, stats, and whole-topic reads."""
