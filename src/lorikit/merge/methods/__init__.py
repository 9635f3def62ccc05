"""Merge methods, one file each; every module here is imported by ``registry.methods()``."""
