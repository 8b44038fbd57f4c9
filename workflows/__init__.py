"""Workflows: ComfyUI-style node graphs run as generations (ARCHITECTURE.md section 10).

The node registry (core nodes and plugins from the ``atelier.nodes`` entry point group), the
validation and pricing of a graph at submission, and the executor the worker runs it with.
Modules that the web tier imports never import torch; the nodes' work does, when it runs.
"""
