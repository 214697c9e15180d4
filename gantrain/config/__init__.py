"""Config -> objects: building a run from a composed config, the groups' schemas, the resolvers, migration of old
configs and what a checkpoint's config may build. Importing it registers the schemas and resolvers Hydra needs."""

from gantrain.config import group_schemas, resolvers, schema  # noqa: F401  (registered on import)
