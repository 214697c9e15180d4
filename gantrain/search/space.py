"""A search space written as Hydra sweep overrides, as Optuna distributions, and a trial's values back as overrides.

The syntax is Hydra's (and that of the Optuna sweeper plugin gantrain used before): `key=tag(log, interval(a, b))`
is log-uniform, `interval(a, b)` uniform (integers with `int(interval(a, b))`), `choice(a, b)` and `a,b` categorical,
`range(a, b, step)` integers (or floats) on a grid. Any other override is fixed: every trial gets it as written.
"""

import math

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from gantrain.errors import UserError


def distribution(override: Override) -> BaseDistribution:
    """The Optuna distribution of one sweep override."""
    value = override.value()
    if override.is_interval_sweep():
        low, high, log = value.start, value.end, "log" in value.tags
        if isinstance(low, int) and isinstance(high, int):
            return IntDistribution(low, high, log=log)
        return FloatDistribution(float(low), float(high), log=log)
    if override.is_range_sweep() and not value.shuffle:
        # range's end is exclusive, Optuna's inclusive: the last value range() gives
        last = value.start + value.step * math.ceil((value.stop - value.start) / value.step - 1)
        if any(isinstance(x, float) for x in (value.start, value.stop, value.step)):
            return FloatDistribution(value.start, last, step=value.step)
        return IntDistribution(int(value.start), int(last), step=int(value.step))
    # choice(...), a,b,c and shuffled ranges: the values as Hydra writes them back (quoted where they must be)
    return CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))


def search_space(arguments: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(the searched keys' distributions, the fixed overrides as written) of a command line's overrides."""
    space, fixed = {}, []
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_sweep_override():
            try:
                space[override.get_key_element()] = distribution(override)
            except ValueError as err:  # e.g. interval(1e-3, 1e-5): Optuna's own words name the problem
                raise UserError(f"{override.input_line}: {err}") from None
        else:
            fixed.append(override.input_line)
    return space, fixed


def as_overrides(params: dict) -> list[str]:
    """A trial's values as `key=value` overrides for the run's command line."""
    return [f"{key}={value}" for key, value in params.items()]
