"""The documentation: mkdocs.yml builds docs/ with `mkdocs build --strict` (a page left out of the navigation, a
missing picture, a broken link or anchor fails it), the built site fetches nothing from the network when it is
opened, and the README, its front door, stays short and links only to files and anchors that exist."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO

README = REPO / "README.md"
# an attribute or a CSS url() that makes a browser fetch from another host: absolute or protocol-relative
OFF_SITE = re.compile(r"""(?:\b(?:src|href|srcset)\s*=\s*["']?|url\(\s*["']?)(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
                           "--site-dir", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})  # Material's notice about MkDocs 2.0
    assert done.returncode == 0, f"mkdocs build --strict failed (pip install -e '.[docs]'?):\n{done.stdout}{done.stderr}"
    return out


def test_every_page_and_the_changelog_are_built(site):
    pages = {p.relative_to(REPO / "docs").with_suffix(".html") for p in (REPO / "docs").rglob("*.md")}
    assert pages <= {p.relative_to(site) for p in site.rglob("*.html")}
    changelog = (site / "changelog.html").read_text()
    assert "--8&lt;--" not in changelog and "--8<--" not in changelog, "CHANGELOG.md was not included"
    for heading in re.findall(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), re.M):
        assert heading in changelog, heading


def test_the_site_fetches_nothing_from_the_network(site):
    found = {}
    for path in site.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".css", ".js", ".json", ".xml", ".svg", ".map"):
            text = path.read_text(errors="replace")
            if hits := [text[m.start():m.end() + 40] for m in OFF_SITE.finditer(text)]:
                found[str(path.relative_to(site))] = hits[:3]
    assert not found, f"off-site references (fonts, scripts, links) in the built site: {found}"


def test_the_off_site_check_finds_fonts_scripts_and_links():
    for text in ('<link href="https://fonts.googleapis.com/css">', "<script src='//cdn.example/x.js'>",
                 "src: url(https://fonts.gstatic.com/a.woff2)", '<a href="http://example.com">'):
        assert OFF_SITE.search(text), text
    for text in ('<a href="guide/outputs.html">', '<img src="gallery/default.png">', "url(data:image/svg+xml;x)"):
        assert not OFF_SITE.search(text), text


def test_the_readme_is_a_short_front_door():
    assert len(README.read_text().splitlines()) <= 200


def test_the_readmes_links_lead_to_files_and_anchors_that_exist(site):
    """README links are read on GitHub and PyPI, outside the site: each must name a file of the repository, and an
    anchor into a documentation page must be an id of that page as the site builds it."""
    for target in re.findall(r"\]\(([^)\s]+)\)", README.read_text()):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        assert (REPO / path).exists(), target
        if anchor:
            page = site / Path(path).relative_to("docs").with_suffix(".html")
            assert f'id="{anchor}"' in page.read_text(), target


def test_ci_runs_exactly_the_readmes_test_command():
    """The README's set-up command for the tests, and CI's: one line, the same. Before it CI may install Debian
    packages the suite uses (the PostgreSQL server of the search's test), nothing else."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    (shown,) = [line for block in blocks for line in block.splitlines() if "python -m pytest" in line]
    script = (REPO / ".ci" / "run").read_text().splitlines()
    debian = ("export DEBIAN_FRONTEND=", "apt-get ")
    assert [line for line in script if line and not line.startswith(("#", "set ", "cd ", *debian))] == [shown]
