"""Backends: read the compiled IR and write PyTorch source, reports and diagrams.  They never re-parse."""
