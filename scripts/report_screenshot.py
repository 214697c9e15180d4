"""Look at a gantrain-report page as a user would: render DIR/report.html in headless Chromium, save a PNG.

Usage: python scripts/report_screenshot.py DIR [--out report.png] [--size 1400,1100]
(Debian/Ubuntu: apt-get install chromium.) Exits 2 with one line when no Chromium is installed.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def screenshot(page: Path, out: Path, size: str = "1400,1100") -> Path:
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError(f"no Chromium found ({', '.join(BROWSERS)}): apt-get install chromium")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:  # a throwaway profile: nothing of the user's is touched
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={size}", f"--screenshot={out.absolute()}",
                        page.absolute().as_uri()], check=True, capture_output=True, timeout=120)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder holding report.html (run gantrain-report on it first)")
    parser.add_argument("--out", type=Path, default=None, help="the PNG (default: FOLDER/report.png)")
    parser.add_argument("--size", default="1400,1100", help="window size WIDTH,HEIGHT in pixels")
    args = parser.parse_args()
    page = args.folder / "report.html"
    if not page.is_file():
        sys.exit(f"report_screenshot.py: error: {page} does not exist: run gantrain-report {args.folder} first")
    try:
        out = screenshot(page, args.out or args.folder / "report.png", args.size)
    except FileNotFoundError as err:
        print(f"report_screenshot.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    print(out)


if __name__ == "__main__":
    main()
