"""gantrain's search worker as a Hydra sweeper (hydra/sweeper=search). Hydra instantiates sweepers only from
hydra_plugins.*, and imports every module there whenever an app starts: so this one imports nothing heavy and
hands the work to gantrain.search.sweeper (Optuna) when a search really runs."""

import os
import warnings

from hydra.plugins.sweeper import Sweeper

# Hydra builds the sampler and pruner (PatientPruner carries Optuna's "experimental" label) before gantrain.search runs
warnings.filterwarnings("ignore", message=r".* is experimental \(supported from")


class SearchSweeper(Sweeper):
    def __init__(self, **settings):
        from gantrain.search.sweeper import SearchWorker

        self.worker = SearchWorker(**settings)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.worker.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        from gantrain.cli.exits import fail
        from gantrain.errors import UserError

        try:
            self.worker.sweep(arguments)
        except UserError as err:  # a storage that cannot be opened, say: one line, as for the command line's mistakes
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            fail(str(err))
