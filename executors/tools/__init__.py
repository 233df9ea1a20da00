"""Outbound tools: one module per tool, one Executor class per operation."""
