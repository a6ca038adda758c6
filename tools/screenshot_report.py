"""A PNG of a report's page, taken by headless Chromium (for the README and docs/).

    python tools/screenshot_report.py catalogs/quickstart.report --out docs/figures/report_summary.png
    python tools/screenshot_report.py catalogs/quickstart.report --page scans/benchmark-quickstart/0.html \
        --out docs/figures/report_scan.png --full-page

Chromium is Debian's ``chromium`` (``apt-get install -y chromium``; installed
here when missing and root, as the browser tests do).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    from cdiplatform.testing.browser import Chromium, ensure_chromium

    parser = argparse.ArgumentParser()
    parser.add_argument("report", type=Path, help="the report's folder (cdip report --out)")
    parser.add_argument("--page", default="index.html", help="page inside the report")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not only the first screen")
    args = parser.parse_args()
    page = (args.report / args.page).resolve()
    if not page.is_file():
        raise SystemExit(f"{page}: no such page")
    with Chromium(executable=ensure_chromium(), width=args.width, height=args.height) as browser:
        load = browser.load(page.as_uri())
        for error in load.errors:
            print(f"page error: {error}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(browser.screenshot(full_page=args.full_page))
    print(f"screenshot: {args.out}")


if __name__ == "__main__":
    main()
