"""The schemas agree with the code they describe: every target gantrain's config groups name has one, its keys are
the target's own arguments, and a resolver's bad argument is reported as the key the user typed."""

import inspect

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from gantrain.config.group_schemas import RunConfig
from gantrain.config.schema import BY_TARGET, validate
from gantrain.config.trust import targets_in
from gantrain.errors import UserError
from support import REPO

# arguments gantrain passes itself when it builds the object (the data's shape, the other groups' objects, ...)
GIVEN_AT_BUILD = {"self", "shape", "num_classes", "data", "test_data", "run_dir", "purge_step", "params", "loss",
                  "generator_ab", "generator_ba", "discriminator_a", "discriminator_b"}


def keyword_arguments(target: str) -> set[str]:
    """The arguments a config node can set for `target` (those of base classes too, when it takes **kwargs)."""
    obj = get_object(target)
    names, classes = set(), obj.__mro__ if inspect.isclass(obj) else [obj]
    for owner in classes:
        function = owner.__init__ if inspect.isclass(owner) else owner
        parameters = inspect.signature(function).parameters.values()
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    names |= set(getattr(obj, "networks", {}).values())  # a System's network nodes (CycleGAN's generator)
    network = target.startswith("gantrain.models.")  # a generator's z_dim is the model's (model.z_dim)
    return names - GIVEN_AT_BUILD - ({"z_dim"} if network else set())


def shipped_targets() -> set[str]:
    """Every `_target_` of the config groups (Hydra's own settings, configs/hydra/ and `hydra:` nodes, excepted)."""
    files = [p for p in (REPO / "configs").rglob("*.yaml") if "hydra" not in p.relative_to(REPO / "configs").parts]
    configs = [{k: v for k, v in (OmegaConf.to_container(OmegaConf.load(path)) or {}).items() if k != "hydra"}
               for path in files]
    return {target for config in configs for _, target in targets_in(config)}


def test_every_target_gantrain_ships_has_a_schema():
    assert shipped_targets() - set(BY_TARGET) == set()


@pytest.mark.parametrize("target", sorted(BY_TARGET))
def test_a_schema_takes_exactly_its_targets_arguments(target):
    fields = {name for name in BY_TARGET[target].__dataclass_fields__}
    sharing = [t for t, schema in BY_TARGET.items() if schema is BY_TARGET[target]]
    assert keyword_arguments(target) <= fields, f"arguments of {target} without a schema field"
    assert fields <= set().union(*(keyword_arguments(t) for t in sharing)), f"fields no target of {sharing} takes"


def test_a_resolvers_bad_argument_names_the_key_the_user_typed(compose):
    cfg = compose()  # the default recipe: optim.generator.lr is ${gantrain_times:${..lr},2.3}
    cfg.optim.lr = "abc"
    with pytest.raises(UserError, match=r"^optim\.lr=abc: gantrain_times multiplies numbers, not 'abc' \(for "
                                        r"optim\.generator\.lr\)$"):
        validate(cfg.optim.generator, None, "optim.generator")
    with pytest.raises(UserError, match=r"^optim\.lr=abc: expected a positive number$"):
        validate(cfg, RunConfig)  # the whole config: the key the user typed comes first


def test_values_are_converted_as_omegaconf_converts_them(compose):
    cfg = compose("model.conditional=yes", "data.hflip=off", "trust_checkpoint=1")
    validate(cfg, RunConfig)
    assert (cfg.model.conditional, cfg.data.hflip, cfg.trust_checkpoint) == (True, False, True)
    for value in ("maybe", "2.5", "[true]"):
        with pytest.raises(UserError, match="expected a boolean"):
            validate(compose(f"model.conditional={value}"), RunConfig)
