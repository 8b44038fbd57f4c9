"""How long the dispatcher's heartbeat lasts (generations/liveness.py); config/settings.py takes
every name from here."""

from __future__ import annotations

from core.env import env_int

# The dispatcher beats once per loop; a loop stuck this long fails its liveness probe
# (`manage.py alive --dispatcher`) and Kubernetes restarts it.
ATELIER_DISPATCHER_HEARTBEAT_TTL = env_int("ATELIER_DISPATCHER_HEARTBEAT_TTL", 120)
