"""Reasoner backends (llama.cpp)."""
