"""gantrain's search worker as a Hydra sweeper (hydra/sweeper=search). Hydra instantiates sweepers only from
hydra_plugins.*, and imports every module there whenever an app starts: so this one imports nothing heavy and
hands the work to gantrain.search.sweeper (Optuna) when a search really runs."""

from hydra.plugins.sweeper import Sweeper


class SearchSweeper(Sweeper):
    def __init__(self, **settings):
        from gantrain.search.sweeper import SearchWorker

        self.worker = SearchWorker(**settings)

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.worker.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        self.worker.sweep(arguments)
