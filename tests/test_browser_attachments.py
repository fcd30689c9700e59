"""Attaching files in Debian's Chromium against the live stack: a text file goes with the
message and shows on it, downloadable; images only for models that take them."""

import io
import re

from PIL import Image
from playwright.sync_api import Page, expect

from tests.helpers import last_answer, log_in
from tests.helpers import type_and_send as send

CSV = b"city,people\nOslo,709000\nBergen,291000\n"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 200), (40, 120, 200)).save(out, "PNG")
    return out.getvalue()


def files_to_send(page: Page):
    return page.get_by_role("list", name="Files to send")


def pick_model(page: Page, name: str) -> None:
    page.get_by_role("button", name=re.compile("^Model:")).click()
    page.get_by_role("option", name=re.compile(f"^{re.escape(name)}")).click()


def test_a_file_attached_in_the_composer_shows_on_the_sent_message_and_downloads(live_url, browser_page, make_user):
    make_user("filer")
    page = browser_page
    log_in(page, live_url, "filer")

    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach files").click()
    chooser.value.set_files([{"name": "cities.csv", "mimeType": "text/csv", "buffer": CSV}])
    expect(files_to_send(page)).to_contain_text("cities.csv")
    expect(files_to_send(page)).to_contain_text("bytes")
    send(page, "Which city is larger? [sim:think=0]")

    question = page.get_by_role("article", name="You said").last
    link = question.get_by_role("link", name=re.compile("cities.csv"))
    expect(link).to_be_visible()
    expect(files_to_send(page)).to_be_hidden()
    expect(last_answer(page)).to_contain_text("Oslo,709000", timeout=20_000)  # the simulator echoes what the model received
    expect(last_answer(page).locator(".msg-foot")).to_be_visible(timeout=20_000)

    assert page.request.get(live_url + link.get_attribute("href")).body() == CSV
    page.reload()
    expect(page.get_by_role("article", name="You said").last.get_by_role("link", name=re.compile("cities.csv"))).to_be_visible()


def test_images_are_refused_for_a_model_that_takes_none_and_shown_as_thumbnails_for_one_that_does(live_url, browser_page, make_user):
    make_user("painter")
    page = browser_page
    log_in(page, live_url, "painter")
    pick_model(page, "o1-mini")

    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach files").click()
    assert "image/png" not in (chooser.value.element.get_attribute("accept") or "")
    chooser.value.set_files([{"name": "blue.png", "mimeType": "image/png", "buffer": png()}])
    expect(page.get_by_role("alert").filter(has_text="o1-mini does not take images")).to_be_visible()
    expect(files_to_send(page)).to_be_hidden()

    pick_model(page, "GPT-4o")
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach files").click()
    assert "image/png" in (chooser.value.element.get_attribute("accept") or "")
    chooser.value.set_files([{"name": "blue.png", "mimeType": "image/png", "buffer": png()}])
    expect(files_to_send(page)).to_contain_text("blue.png")
    expect(files_to_send(page)).not_to_contain_text("uploading")
    send(page, "What colour is this? [sim:think=0]")

    thumbnail = page.get_by_role("article", name="You said").last.get_by_role("img", name="blue.png")
    expect(thumbnail).to_be_visible()
    # Loaded from our own origin, under the page's Content-Security-Policy.
    assert page.wait_for_function("img => img.complete && img.naturalWidth === 320", arg=thumbnail.element_handle())
