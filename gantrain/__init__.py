"""gantrain: config-driven GAN training with PyTorch and Hydra."""

from gantrain import moved

__version__ = "0.3.0"

# The package's layers, lowest first. A module imports from its own layer or lower ones, never higher, and no two
# sub-packages import each other (tests/unit/test_layers.py reads this table and checks every import).
LAYERS = (
    ("errors", "device", "files", "caches", "fields", "moved"),  # the modules at the top of gantrain/
    ("data", "models"),
    ("systems",),
    ("training",),
    ("config",),
    ("metrics", "generate"),
    ("search",),
    ("cli",),
)

moved.install()  # 0.2's module paths (gantrain.losses, gantrain.trainer, ...) still import, with a DeprecationWarning
