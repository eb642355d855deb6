"""One headless Chromium on the Riffle web UI at URL, for benches/ui.sh.

The browser starts first (its start-up is not what is measured) and
prints `ready`; the benchmark then starts the driver. As soon as the UI
answers, the browser opens the jobs page, which refetches on every live
update, prints `connected` once the page's live update stream is open,
and stays until killed."""

import sys
import time
import urllib.request

from playwright.sync_api import sync_playwright

url = sys.argv[1]
with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        headless=True,
        args=["--no-sandbox", "--disable-background-networking",
              "--disable-component-update", "--no-first-run"],
    )
    page = browser.new_page()
    page.goto("about:blank")
    print("ready", flush=True)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "api/v1/application", timeout=1).read()
            break
        except Exception:
            if time.time() > deadline:
                sys.exit("the UI never came up")
            time.sleep(0.02)
    page.goto(url + "#/")
    # The page marks <body data-connected="true"> once its live update
    # stream is open.
    page.wait_for_selector('body[data-connected="true"]', state="attached", timeout=60000)
    # Opening the stream triggers one refresh of the page; let it finish.
    time.sleep(1)
    print("connected", flush=True)
    while True:
        time.sleep(1)
