"""Readers and writers for mesh and image files."""
