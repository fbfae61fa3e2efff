# What mypy reads for `import voluptuous` on the newest test stack (scripts/test sets MYPYPATH).
# From Home Assistant 2026.9 on, `voluptuous` is probatio at run time (homeassistant/__init__.py
# installs probatio's voluptuous surface under that name) and Home Assistant's signatures name
# probatio's types, while the real voluptuous package still installed beside it has other ones.
# Goes when the oldest supported release is 2026.9 or later: then `import probatio as vol`.
from probatio import *  # noqa: F403  (all of it, as the shim at run time)
