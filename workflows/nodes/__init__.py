"""The core nodes, written as ComfyUI custom nodes are (so a plugin reads like one of these).

Declarations only at import: each node's work imports torch when it runs, in the worker.
"""

MAX_RESOLUTION = 16384
