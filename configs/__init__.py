"""gantrain's config groups (pkg://gantrain.configs). Importing the package registers the groups' schemas and the
resolvers with Hydra and OmegaConf, so the configs compose wherever they are loaded from, not only through the CLI."""

import gantrain.config  # noqa: F401
