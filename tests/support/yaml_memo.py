"""Parse each config file's YAML once per test process.

Hydra composes a config by reading every file of the defaults list again (60 files, each time), and the
suite composes about 850 times: a third of each composition is PyYAML's pure-Python parser reading the same
text. Here OmegaConf's YAML parsing is memoised by the file's text and hands out a deep copy of the plain
Python objects, so everything after parsing (OmegaConf nodes, merges, interpolation, validation) still runs
on every composition. The command server installs it and parses the packaged configs before forking, so its
children inherit them parsed.
"""

import copy
from importlib import resources

import omegaconf.omegaconf
import yaml
from omegaconf._utils import get_yaml_loader


class MemoisedYaml:
    """The `yaml` module as omegaconf.omegaconf sees it, with a memoised `load`."""

    def __init__(self):
        self.parsed: dict[str, object] = {}

    def __getattr__(self, name: str):
        return getattr(yaml, name)

    def load(self, stream, Loader):
        # OmegaConf makes a fresh Loader class per call; its rules do not change, so the text is the key
        text = stream.read() if hasattr(stream, "read") else stream
        if text not in self.parsed:
            self.parsed[text] = yaml.load(text, Loader=Loader)
        return copy.deepcopy(self.parsed[text])


def install() -> None:
    if not isinstance(omegaconf.omegaconf.yaml, MemoisedYaml):
        omegaconf.omegaconf.yaml = MemoisedYaml()


def parse_packaged_configs(*packages: str) -> None:
    """Parse every YAML file of these config packages now (as Hydra reads them: text, UTF-8)."""
    memo = omegaconf.omegaconf.yaml
    for package in packages:
        for path in _yaml_files(resources.files(package)):
            memo.load(path.read_text(encoding="utf-8"), Loader=get_yaml_loader())


def _yaml_files(folder):
    for entry in folder.iterdir():
        if entry.is_dir():
            yield from _yaml_files(entry)
        elif entry.name.endswith(".yaml"):
            yield entry
