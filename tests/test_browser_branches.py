"""Branches and Continue in Debian's Chromium, against the live stack: edit an earlier
question, see ‹2/2›, go back to ‹1/2› and its whole continuation; two tabs follow;
Continue an answer cut off at the output limit."""

import re

from django.apps import apps
from playwright.sync_api import Page, expect

from tests.helpers import last_answer, log_in, wait_until
from tests.helpers import type_and_send as send

FAST = "[sim:think=0] [sim:tokens=8]"


def finished(page: Page, count: int) -> None:
    """Wait until `count` answers are shown and the last one has its footer (it has ended)."""
    expect(page.locator("article.msg-assistant")).to_have_count(count)
    expect(last_answer(page).locator(".msg-foot")).to_be_visible()


def bubbles(page: Page):
    return page.locator("article.msg-user .bubble")


def edit(page: Page, question: int, text: str) -> None:
    asked = page.locator("article.msg-user").nth(question)
    asked.hover()
    asked.get_by_role("button", name="Edit message").click()
    page.get_by_label("Edit your message").fill(text)
    page.get_by_role("button", name="Save & resend").click()


def test_editing_an_earlier_question_starts_a_branch_and_the_arrows_switch_between_them(live_url, browser_page, make_user):
    make_user("brancher")
    page = browser_page
    log_in(page, live_url, "brancher")
    for n, question in enumerate(["Where is Lyon?", "And Nantes?", "And Lille?"], start=1):
        send(page, f"{question} {FAST}")
        finished(page, n)

    edit(page, 1, f"And Brest? {FAST}")

    finished(page, 2)
    expect(bubbles(page)).to_have_text([f"Where is Lyon? {FAST}", f"And Brest? {FAST}"])
    edited = page.locator("article.msg-user").nth(1)
    expect(edited.get_by_role("group", name="Version 2 of 2")).to_contain_text("2/2")
    expect(page.get_by_role("region", name="Messages")).not_to_contain_text("Lille")

    edited.get_by_role("button", name="Previous version").click()

    # The old branch comes back whole: the old second question, its answer, and the third turn after it.
    expect(bubbles(page)).to_have_text([f"Where is Lyon? {FAST}", f"And Nantes? {FAST}", f"And Lille? {FAST}"])
    finished(page, 3)
    expect(page.locator("article.msg-user").nth(1).get_by_role("group", name="Version 1 of 2")).to_contain_text("1/2")
    expect(last_answer(page).locator(".md")).to_contain_text("You said: And Lille?")

    page.reload()  # the branch on screen is stored

    expect(bubbles(page)).to_have_text([f"Where is Lyon? {FAST}", f"And Nantes? {FAST}", f"And Lille? {FAST}"])
    page.locator("article.msg-user").nth(1).get_by_role("button", name="Next version").click()
    expect(bubbles(page)).to_have_text([f"Where is Lyon? {FAST}", f"And Brest? {FAST}"])


def test_a_second_tab_follows_a_switch_of_branch(live_url, browser_page, make_user):
    make_user("twobranches")
    first = browser_page
    log_in(first, live_url, "twobranches")
    send(first, f"Name a river {FAST}")
    finished(first, 1)
    last_answer(first).get_by_role("button", name="Regenerate answer").click()
    expect(last_answer(first).get_by_role("group", name="Version 2 of 2")).to_be_visible()
    finished(first, 1)
    second = first.context.new_page()
    errors: list[str] = []
    second.on("pageerror", lambda exc: errors.append(str(exc)))
    second.goto(first.url)
    expect(last_answer(second).get_by_role("group", name="Version 2 of 2")).to_be_visible()

    last_answer(first).get_by_role("button", name="Previous version").click()

    expect(last_answer(first).get_by_role("group", name="Version 1 of 2")).to_be_visible()
    expect(last_answer(second).get_by_role("group", name="Version 1 of 2")).to_be_visible()
    second.close()
    assert not errors, f"JavaScript errors in the second tab: {errors}"


def test_continue_goes_on_with_an_answer_cut_off_at_the_output_limit(live_url, browser_page, make_user):
    make_user("continuer")
    page = browser_page
    log_in(page, live_url, "continuer")
    send(page, f"Write a long story [sim:finish=length] {FAST}")
    finished(page, 1)
    cut = last_answer(page)
    expect(cut).to_contain_text("cut off")
    partial = cut.locator(".md").inner_text()

    cut.get_by_role("button", name="Continue answer").click()

    finished(page, 2)
    continuation = last_answer(page)
    expect(continuation).to_have_class(re.compile(r"\bmsg-continuation\b"))
    expect(continuation.locator(".md")).to_contain_text("You said: Your previous answer was cut off.")
    expect(page.locator("article.msg-assistant").first.locator(".md")).to_have_text(partial)  # the earlier text is kept
    expect(page.get_by_role("button", name="Continue answer")).to_have_count(0)
    Message = apps.get_model("chat", "Message")
    answers = Message.objects.filter(conversation__user__username="continuer", role="assistant").order_by("id")
    wait_until(lambda: [(a.status, a.parent_id) for a in answers][1:] == [("done", answers[0].id)], what="the continuation stored")

    page.reload()

    expect(page.locator("article.msg-assistant")).to_have_count(2)
    expect(last_answer(page)).to_have_class(re.compile(r"\bmsg-continuation\b"))
