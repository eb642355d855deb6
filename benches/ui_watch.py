"""Keeps one headless Chromium on the Riffle web UI at URL (waiting for it
to come up), on the jobs page, which refetches on every live update, until
killed. Used by benches/ui.sh to measure the UI's cost with a browser
connected."""

import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

url = sys.argv[1]
deadline = time.time() + 120
while True:
    try:
        urllib.request.urlopen(url + "api/v1/application", timeout=1).read()
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("the UI never came up")
        time.sleep(0.05)
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        headless=True,
        args=["--no-sandbox", "--disable-background-networking",
              "--disable-component-update", "--no-first-run"],
    )
    page = browser.new_page()
    page.goto(url + "#/")
    print("connected", flush=True)
    while True:
        time.sleep(1)
