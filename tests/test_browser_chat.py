"""What a person does in the chat page, in Debian's Chromium, against the live stack
(ASGI server, Celery worker and simulator; fixtures in conftest.py)."""

import json
import re

from django.apps import apps
from playwright.sync_api import expect

from chat.models import Conversation
from tests.helpers import PASSWORD, last_answer, log_in, wait_until
from tests.helpers import type_and_send as send


def test_a_new_user_signs_up_and_gets_a_streamed_markdown_answer_that_survives_a_reload(live_url, browser_page):
    page = browser_page
    page.goto(f"{live_url}/accounts/signup/")
    page.get_by_label("Username").fill("reader")
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()
    expect(page.get_by_text("Simulator: answers are not from OpenAI")).to_be_visible()

    send(page, "Show me some markdown, please")

    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    answer = last_answer(page)
    # The simulator's markdown answer: a heading, a list and a highlighted Python block with a Copy button.
    expect(answer.get_by_role("heading", name="Example")).to_be_visible()
    expect(answer.locator(".code-block code.hljs .hljs-keyword").first).to_have_text("def")
    expect(answer.get_by_role("button", name="Copy python code")).to_be_visible()
    expect(answer.locator(".msg-meta")).to_contain_text(re.compile(r"\d+ in · \d+ out"))
    expect(page.get_by_role("link", name="Show me some markdown, please")).to_be_visible()
    streamed = answer.locator(".md").inner_text()

    page.reload()

    answer = last_answer(page)
    expect(answer.locator(".code-block code.hljs .hljs-keyword").first).to_have_text("def")
    assert answer.locator(".md").inner_text() == streamed
    expect(page.locator("article.msg-user .bubble")).to_have_text("Show me some markdown, please")
    expect(page.get_by_role("link", name="Show me some markdown, please")).to_have_attribute("aria-current", "page")


def test_user_text_is_shown_exactly_as_written_never_as_html(live_url, browser_page, make_user):
    make_user("literal")
    page = browser_page
    log_in(page, live_url, "literal")
    text = "<b>not bold</b> *not italic*\n  indented line [sim:think=0]"

    send(page, text)

    bubble = page.locator("article.msg-user .bubble")
    expect(bubble).to_have_text(text)
    assert bubble.locator("b").count() == 0
    expect(last_answer(page).locator(".msg-foot")).to_be_visible()


def test_an_exhausted_model_offers_a_one_click_switch_that_resends_the_text(live_url, browser_page, make_user, catalog):
    user = make_user("thrifty")
    earlier = Conversation.objects.create(user=user, model=catalog["o1-preview"], title="Earlier on o1-preview")
    QuotaOverride = apps.get_model("quotas", "QuotaOverride")
    QuotaOverride.objects.create(
        user=user, model=catalog["o1-preview"], messages=0, window_kind="anchored", window_length=7, window_unit="day"
    )
    page = browser_page
    log_in(page, live_url, "thrifty")
    page.goto(f"{live_url}/c/{earlier.id}/")
    page.get_by_role("button", name=re.compile("^Model:")).click()
    page.get_by_role("option", name=re.compile("o1-preview")).click(force=True)  # disabled: stays unselected
    expect(page.get_by_role("option", name=re.compile("o1-preview"))).to_have_attribute("aria-disabled", "true")
    expect(page.get_by_role("option", name=re.compile("o1-preview"))).to_contain_text("Limit reached")
    page.keyboard.press("Escape")

    # The chat was on o1-preview, which this user has no messages left for (a new chat would not start on it).
    send(page, "Which model answers this? [sim:think=0]")

    banner = page.get_by_role("alert").filter(has_text="limit reached")
    expect(banner).to_be_visible()
    expect(page.get_by_label("Message", exact=True)).to_have_value("Which model answers this? [sim:think=0]")
    banner.get_by_role("button", name="Switch to o1-mini").click()

    expect(last_answer(page).locator(".msg-meta")).to_contain_text("o1-mini")
    expect(page.locator("article.msg-user .bubble")).to_have_text("Which model answers this? [sim:think=0]")
    expect(page.get_by_role("button", name=re.compile("^Model:"))).to_contain_text("o1-mini")
    expect(page.get_by_label("Message", exact=True)).to_have_value("")


def test_a_conversation_can_be_renamed_and_deleted_after_confirming(live_url, browser_page, make_user):
    make_user("tidy")
    page = browser_page
    log_in(page, live_url, "tidy")
    send(page, "Short lived [sim:think=0]")
    expect(last_answer(page).locator(".msg-foot")).to_be_visible()

    page.get_by_role("button", name="Rename “Short lived [sim:think=0]”").click()
    page.get_by_label("New title").fill("Keep me brief")
    page.get_by_label("New title").press("Enter")
    expect(page.get_by_role("link", name="Keep me brief")).to_be_visible()

    page.get_by_role("button", name="Delete “Keep me brief”").click()
    dialog = page.get_by_role("dialog", name="Delete chat?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Delete").click()

    expect(page).to_have_url(f"{live_url}/")
    expect(page.get_by_role("link", name="Keep me brief")).to_have_count(0)
    page.reload()
    expect(page.get_by_text("Your chats will appear here.")).to_be_visible()


def test_a_lost_delta_is_recovered_by_resync_without_gap_or_duplicate(live_url, browser_page, make_user):
    make_user("lossy")
    page = browser_page
    to_server: list[dict] = []
    deltas_seen = 0

    def handle(ws):
        server = ws.connect_to_server()

        def upstream(message):
            to_server.append(json.loads(message))
            server.send(message)

        def downstream(message):
            nonlocal deltas_seen
            frame = json.loads(message)
            if frame.get("type") == "delta" and frame.get("text"):
                deltas_seen += 1
                if deltas_seen == 3:  # the channel layer lost this one
                    return
            if frame.get("type") == "done":  # so the text on screen comes from deltas and resync alone
                return
            ws.send(message)

        ws.on_message(upstream)
        server.on_message(downstream)

    page.route_web_socket(re.compile(r".*/ws/chat/$"), handle)
    log_in(page, live_url, "lossy")

    send(page, "Lose a piece [sim:think=0] [sim:rate=40] [sim:tokens=80]")

    Message = apps.get_model("chat", "Message")
    reply = wait_until(
        lambda: Message.objects.filter(role="assistant", conversation__user__username="lossy", status="done").first(),
        timeout=20,
        what="the answer to be stored",
    )
    expect(last_answer(page).locator(".md")).to_have_text(reply.text.strip())
    assert [f["message_id"] for f in to_server if f["type"] == "resync"] == [reply.id]
