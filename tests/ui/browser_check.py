"""Drives the live web UI in headless Chromium while `jobs ui-demo` runs.

Called by tests/it/ui.rs with the UI's base URL and a directory for
screenshots. Checks, without ever reloading the page (a marker set on
`window` must survive):

- the jobs page shows job 0 running;
- its page draws the DAG: 2 stages, 1 shuffle edge;
- stage 0's task table fills in live;
- job 0 ends succeeded; job 1 ends failed, its page showing the failure.

Exits non-zero with a message naming the check that failed.
"""

import argparse
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    base = args.url.rstrip("/")

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        shot = lambda name: page.screenshot(path=f"{args.out}/{name}.png", full_page=True)

        try:
            checks(page, base, shot, errors)
        except Exception:
            # What the page showed when a check failed, for the artefacts.
            try:
                shot("failed")
            except Exception:
                pass
            raise
        browser.close()
    print("browser check: ok")
    return 0


def checks(page, base: str, shot, errors: list) -> None:
    """The checks, in order; raises naming the one that failed."""
    page.goto(f"{base}/#/")
    page.evaluate("window.__noReload = 1")
    # The demo starts its jobs when the test relays this line.
    print("page loaded", flush=True)
    step("jobs page shows job 0 running")
    page.wait_for_selector('#jobs-table tr[data-job-id="0"][data-status="running"]', timeout=30_000)
    shot("1-jobs-running")

    step("job page draws the DAG: 2 stages, 1 edge")
    page.evaluate("location.hash = '#/jobs/0'")
    page.wait_for_function(
        "document.querySelectorAll('svg#dag g.stage-node').length === 2"
        " && document.querySelectorAll('svg#dag path.dag-edge').length === 1",
        timeout=20_000,
    )
    edge = page.locator("svg#dag path.dag-edge").first
    assert (edge.get_attribute("data-from"), edge.get_attribute("data-to")) == ("0", "1"), "edge is not 0 -> 1"
    shot("2-job-dag")

    step("stage 0's task table fills in without a reload")
    page.evaluate("location.hash = '#/stages/0/0/0'")
    page.wait_for_selector("#tasks-table tbody tr", timeout=20_000)
    first = count_done(page)
    page.wait_for_function(
        f"document.querySelectorAll('#tasks-table tbody tr[data-status=\"succeeded\"]').length > {first}",
        timeout=30_000,
    )
    shot("3-stage-tasks-live")

    step("job 0 ends succeeded")
    page.evaluate("location.hash = '#/'")
    page.wait_for_selector('#jobs-table tr[data-job-id="0"][data-status="succeeded"]', timeout=90_000)

    step("job 1 ends failed and shows its failure")
    page.wait_for_selector('#jobs-table tr[data-job-id="1"][data-status="failed"]', timeout=60_000)
    shot("4-jobs-done")
    page.evaluate("location.hash = '#/jobs/1'")
    page.wait_for_function(
        "[...document.querySelectorAll('.job-failure')].some(e => e.textContent.includes('boom in the ui demo'))",
        timeout=20_000,
    )
    shot("5-failed-job")

    step("the page was never reloaded and ran without script errors")
    assert page.evaluate("window.__noReload") == 1, "the page reloaded"
    assert not errors, f"script errors: {errors}"


def count_done(page) -> int:
    return page.evaluate(
        "document.querySelectorAll('#tasks-table tbody tr[data-status=\"succeeded\"]').length"
    )


def step(name: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {name}", flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # the failing check's name was printed last
        print(f"browser check failed: {e}", file=sys.stderr)
        sys.exit(1)
