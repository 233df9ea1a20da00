"""Prompt files of the LLM engine (package data: *.txt)."""
