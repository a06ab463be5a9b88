"""Composition roots: one module per process, the only place that wires everything."""
