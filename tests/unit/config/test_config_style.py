"""The config files say what and why in a line or two: every line of the YAML under configs/ and gantrain/ fits in
100 characters, and no comment runs past two lines (a longer story belongs on a study page of docs/, linked)."""

import re

import pytest
from support import REPO

YAML = sorted([*(REPO / "configs").rglob("*.yaml"), *(REPO / "gantrain").rglob("*.yaml")])
MAX_LINE, MAX_COMMENT = 100, 2


def comment_runs(text: str) -> list[tuple[int, int]]:
    """(first line number, length) of each comment: consecutive comment-only lines, and a comment after a value
    together with the comment-only lines below it that start in the same column (its continuation). Hydra's
    header (`# @package _global_`) is a directive, not a comment."""
    runs, start, length, column = [], 0, 0, None
    for number, line in enumerate(text.splitlines() + [""], 1):
        stripped = "" if re.match(r"\s*#\s*@", line) else line.lstrip()
        if stripped.startswith("#") and (length and (column is None or line.index("#") == column)):
            length += 1
            continue
        if length:
            runs.append((start, length))
        trailing = re.search(r"\s#", line) if not stripped.startswith("#") else None
        if stripped.startswith("#"):
            start, length, column = number, 1, None
        elif trailing:
            start, length, column = number, 1, trailing.start() + 1
        else:
            length = 0
    return runs


def test_comment_runs_are_found():
    text = "# a\n# b\nkey: 1  # c\n        # d\n# e\nother: 2 # f\n\n# g\n"
    assert comment_runs(text) == [(1, 2), (3, 2), (5, 1), (6, 1), (8, 1)]
    assert comment_runs("# @package _global_\n# a\n# b\nkey: 1\n") == [(2, 2)]


def test_there_are_config_files():
    assert len(YAML) > 40 and any(p.parts[-2] == "experiment" for p in YAML)


@pytest.mark.parametrize("path", YAML, ids=lambda p: str(p.relative_to(REPO)))
def test_config_lines_and_comments_are_short(path):
    text = path.read_text()
    long = [n for n, line in enumerate(text.splitlines(), 1) if len(line) > MAX_LINE]
    assert not long, f"{path.relative_to(REPO)}: lines over {MAX_LINE} characters: {long}"
    essays = [(n, length) for n, length in comment_runs(text) if length > MAX_COMMENT]
    assert not essays, f"{path.relative_to(REPO)}: comments over {MAX_COMMENT} lines (line, length): {essays}"
