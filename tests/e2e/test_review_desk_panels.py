"""The panels under the review desk follow the desk, in a real headless Chromium.

An inspector makes 20 quick reviews (D, defect: a Good would start an instant update that
re-scores the queue, heavy work this test is not about and which slows the browser tests
running beside it), each key pressed as soon as the desk shows the next part. A watcher in the
page checks after each press, after each new part (called by the test) and on every frame the
browser draws: each visible panel container under the desk is the one of the part on screen,
names that part and no other part, and so does each of its headings; the desk's "Explaining
<name>…" line, when shown, names the part on screen. After the last review the panels of the
part on screen fill in.
"""

from __future__ import annotations

import time

import pytest
from e2e_seed import INSPECTOR, INSPECTOR_PASSWORD, Served, queue_flagged_parts
from live_app import open_browser, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

N_REVIEWS = 20
N_PARTS = N_REVIEWS + 2  # a part is still on screen after the last review
PANELS_CLASS = "st-key-desk_panels_"  # pages.review_desk.PANELS_KEY, as Streamlit's class

# Checks the desk and the panels after each key press (a capture listener added after the
# desk's: it runs once the desk has shown the next part) and on every animation frame; records
# in window.__panels: checks, presses, violations, the parts shown, the parts whose panels showed.
WATCHER = """
([names, prefix]) => {
  const seen = { checks: 0, presses: 0, violations: [], shown: [], explained: [] };
  window.__panels = seen;
  let desk = null;
  const findDesk = () => [...document.querySelectorAll("*")].map((e) => e.shadowRoot)
    .filter(Boolean).map((root) => root.querySelector(".desk")).find(Boolean) || null;
  const violation = (what) => { if (seen.violations.length < 50) seen.violations.push(what); };
  const check = () => {
    seen.checks += 1;
    if (!desk || !desk.isConnected) desk = findDesk();
    if (!desk) return;
    const id = desk.dataset.imageId || null;
    const name = id ? desk.querySelector(".head .name").textContent : null;
    if (name && seen.shown[seen.shown.length - 1] !== name) seen.shown.push(name);
    const note = desk.querySelector(".panels-note").textContent;
    if (note && note !== `Explaining ${name}…`) violation(`desk ${name}, note "${note}"`);
    for (const box of document.querySelectorAll(`[class*="${prefix}"]`)) {
      if (!box.checkVisibility()) continue;
      const key = [...box.classList].find((c) => c.startsWith(prefix));
      const text = box.innerText;
      const others = names.filter((other) => other !== name && text.includes(other));
      if (key !== prefix + id) violation(`desk ${name}, panels ${key} visible`);
      if (others.length) violation(`desk ${name}, panels name ${others}: ${text.slice(0, 200)}`);
      if (text.trim() && name && !text.includes(name)) {
        violation(`desk ${name}, panels without its name: ${text.slice(0, 200)}`);
      }
      for (const heading of box.querySelectorAll("h1, h2, h3, h4")) {
        if (heading.checkVisibility() && !heading.innerText.includes(name)) {
          violation(`desk ${name}, heading "${heading.innerText}"`);
        }
      }
      if (!note && text.includes(name) && !seen.explained.includes(name)) {
        seen.explained.push(name);
      }
    }
  };
  window.__panelsCheck = check;
  document.addEventListener("keydown", () => { seen.presses += 1; check(); }, true);
  const frame = () => { check(); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
}
"""


def shown_part(page, previous: str | None, wait_seconds: float = 15.0) -> str | None:
    """The id of the part on screen once it is not ``previous`` (bounded wait), else None."""
    deadline = time.monotonic() + wait_seconds
    while True:
        value = page.locator(".desk").first.get_attribute("data-image-id")
        if value and value != previous:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def test_twenty_quick_reviews_never_show_the_panels_of_another_part(served: Served) -> None:
    names = queue_flagged_parts(served, N_PARTS, prefix="quick")
    with open_browser() as page:
        sign_in(page, served.app.url, INSPECTOR, INSPECTOR_PASSWORD)
        page.get_by_role("link", name="Review").click()
        part = shown_part(page, None, wait_seconds=60)
        assert part is not None, "no part on the desk"
        page.evaluate(WATCHER, [names, PANELS_CLASS])
        page.evaluate("() => window.__panelsCheck()")  # the first part, before any press
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        for i in range(N_REVIEWS):
            page.keyboard.press("d")
            part = shown_part(page, part)
            assert part is not None, f"no next part on the desk after review {i + 1}"
            page.evaluate("() => window.__panelsCheck()")  # once per part, frames or not

        last = page.locator(".desk .head .name").first.inner_text()
        page.wait_for_function(
            "(name) => window.__panels.explained.includes(name)", arg=last, timeout=60_000
        )
        why = page.locator(f'[class*="{PANELS_CLASS}"] h3').first.inner_text()
        seen = page.evaluate("() => window.__panels")

    assert seen["violations"] == [], seen["violations"]
    assert why.startswith("Why") and last in why, why
    assert seen["presses"] == N_REVIEWS  # each checked after the desk handled it ...
    assert len(seen["shown"]) == N_REVIEWS + 1, seen["shown"]  # ... on the next part
    # ... and on drawn frames (a busy machine draws fewer of them)
    assert seen["checks"] > 2 * N_REVIEWS, seen["checks"]
