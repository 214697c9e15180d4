"""gantrain's config groups (pkg://gantrain.configs). Importing the package registers the trainer group's typed
schema with Hydra's ConfigStore, so the configs compose wherever they are loaded from, not only through the CLI."""

import gantrain.trainer_config  # noqa: F401
