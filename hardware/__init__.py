"""Accelerator specs (catalog, user files, measured devices) and device measurement."""
