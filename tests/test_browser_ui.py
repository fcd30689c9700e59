"""More of what a person does in the chat page, in Debian's Chromium, against the live
stack: thinking, stopping, regenerating, editing, searching, quotas, two tabs, a
dropped connection, a phone, the keyboard. Helpers are those of test_browser_chat.py."""

import json
import re

from django.apps import apps
from playwright.sync_api import Page, expect

from tests.helpers import last_answer, log_in, wait_until
from tests.helpers import type_and_send as send


def stored_reply(username: str, *statuses: str, timeout: float = 20):
    """The user's newest answer once it is stored with one of `statuses`."""
    Message = apps.get_model("chat", "Message")
    return wait_until(
        lambda: (
            Message.objects.filter(role="assistant", conversation__user__username=username, status__in=statuses).order_by("-id").first()
        ),
        timeout=timeout,
        what=f"an answer of {username} with status {statuses}",
    )


def finished(page: Page) -> None:
    """Wait for the last answer to finish: its footer (model, tokens, actions) appears then."""
    expect(last_answer(page).locator(".msg-foot")).to_be_visible()


def messages_region(page: Page):
    return page.get_by_role("region", name="Messages")


def open_picker(page: Page):
    page.get_by_role("button", name=re.compile("^Model:")).click()
    listbox = page.get_by_role("listbox", name="Choose a model")
    expect(listbox).to_be_visible()
    return listbox


def number_above(n: int) -> str:
    return "(?:" + "|".join(str(i) for i in range(n + 1, n + 60)) + ")"


def test_thinking_counts_seconds_then_folds_into_thought_for_n_seconds_with_the_summary(live_url, browser_page, make_user):
    make_user("ponder")
    page = browser_page
    log_in(page, live_url, "ponder")

    send(page, "Think it over [sim:think=3] [sim:reasoning] [sim:tokens=12]")

    answer = last_answer(page)
    label = answer.locator("details.reasoning summary")
    expect(label).to_have_text(re.compile(r"^Thinking… \d+s$"))
    first = int(re.search(r"(\d+)s", label.inner_text()).group(1))
    expect(label).to_have_text(re.compile(rf"^Thinking… {number_above(first)}s$"))  # it ticks on its own
    expect(answer.locator(".md")).to_be_hidden()

    expect(label).to_have_text(re.compile(r"^Thought for \d+ seconds?$"))
    expect(answer.locator(".md")).to_contain_text("You said: Think it over.")
    finished(page)
    thought = label.inner_text()
    assert int(re.search(r"\d+", thought).group()) >= 3, thought
    # Folded: the summary is one click away.
    summary_text = answer.locator(".reasoning-text")
    expect(summary_text).to_be_hidden()
    label.click()
    expect(summary_text).to_be_visible()
    expect(summary_text).to_contain_text("Considering the question… Breaking it into smaller steps…")
    expect(summary_text).to_contain_text("Drafting a concise answer…")

    page.reload()

    answer = last_answer(page)
    expect(answer.locator("details.reasoning summary")).to_have_text(thought)
    answer.locator("details.reasoning summary").click()
    expect(answer.locator(".reasoning-text")).to_contain_text("Considering the question…")


def test_stop_keeps_the_partial_answer_marked_as_stopped_also_after_a_reload(live_url, browser_page, make_user):
    make_user("impatient")
    page = browser_page
    log_in(page, live_url, "impatient")

    send(page, "Go on and on [sim:think=0] [sim:rate=5] [sim:tokens=200]")
    answer = last_answer(page)
    expect(answer.locator(".md")).to_contain_text("You said")
    page.get_by_role("button", name="Stop").click()

    expect(answer.get_by_text("You stopped this answer.")).to_be_visible()
    reply = stored_reply("impatient", "stopped")
    expect(answer.locator(".md")).to_have_text(reply.text.strip())
    assert 0 < len(re.findall(r"\w+", reply.text)) < 200, reply.text  # stopped before its 200 tokens
    expect(page.get_by_role("button", name="Send")).to_be_visible()
    expect(answer.get_by_role("button", name="Regenerate answer")).to_be_visible()

    page.reload()

    answer = last_answer(page)
    expect(answer.locator(".md")).to_have_text(reply.text.strip())
    expect(answer.get_by_text("You stopped this answer.")).to_be_visible()


def test_regenerate_shows_a_new_answer_and_keeps_the_old_one_as_version_1_of_2(live_url, browser_page, make_user):
    make_user("picky")
    page = browser_page
    log_in(page, live_url, "picky")
    send(page, "Answer me twice [sim:think=0]")
    finished(page)
    first_id = last_answer(page).get_attribute("data-id")
    expect(last_answer(page).locator(".msg-meta")).to_contain_text("o1-preview")

    # The second opinion comes from another model, so a person can tell the answers apart.
    open_picker(page).get_by_role("option", name=re.compile("o1-mini")).click()
    last_answer(page).get_by_role("button", name="Regenerate answer").click()

    expect(last_answer(page)).not_to_have_attribute("data-id", first_id)
    finished(page)
    expect(page.locator("article.msg-assistant")).to_have_count(1)
    expect(page.locator("article.msg-user")).to_have_count(1)
    expect(last_answer(page).locator(".msg-meta")).to_contain_text("o1-mini")
    reply = stored_reply("picky", "done")
    assert str(reply.id) != first_id and reply.model.slug == "o1-mini"
    expect(last_answer(page).get_by_role("group", name="Version 2 of 2")).to_be_visible()
    assert apps.get_model("chat", "Message").objects.filter(id=first_id).exists()

    page.reload()

    expect(page.locator("article.msg-assistant")).to_have_count(1)
    expect(last_answer(page)).to_have_attribute("data-id", str(reply.id))
    expect(last_answer(page).locator(".msg-meta")).to_contain_text("o1-mini")


def test_editing_the_last_message_resends_it_and_shows_the_new_turn_only(live_url, browser_page, make_user):
    make_user("editor")
    page = browser_page
    log_in(page, live_url, "editor")
    send(page, "What is the capital of Spain? [sim:think=0]")
    finished(page)
    expect(last_answer(page).locator(".md")).to_contain_text("You said: What is the capital of Spain?")

    question = page.locator("article.msg-user")
    question.hover()
    question.get_by_role("button", name="Edit message").click()
    box = page.get_by_label("Edit your message")
    expect(box).to_have_value("What is the capital of Spain? [sim:think=0]")
    box.fill("What is the capital of Portugal? [sim:think=0]")
    page.get_by_role("button", name="Save & resend").click()

    expect(page.locator("article.msg-user .bubble")).to_have_text("What is the capital of Portugal? [sim:think=0]")
    expect(last_answer(page).locator(".md")).to_contain_text("You said: What is the capital of Portugal?")
    finished(page)
    expect(page.locator("article.msg")).to_have_count(2)
    expect(messages_region(page)).not_to_contain_text("Spain")

    page.reload()

    expect(page.locator("article.msg-user .bubble")).to_have_text("What is the capital of Portugal? [sim:think=0]")
    expect(last_answer(page).locator(".md")).to_contain_text("You said: What is the capital of Portugal?")
    expect(page.locator("article.msg")).to_have_count(2)
    expect(messages_region(page)).not_to_contain_text("Spain")


def test_sidebar_search_finds_chats_by_title_and_by_message_text(live_url, browser_page, make_user, catalog):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    me, someone_else = make_user("finder"), make_user("stranger")
    model = catalog["o1-mini"]
    for user, title, text in [
        (me, "Trip to Lisbon", "Where should we eat pastel de nata?"),
        (me, "Quarterly budget", "Summarise the marmalade sales, please."),
        (someone_else, "Lisbon marmalade", "Not yours to find."),
    ]:
        conversation = Conversation.objects.create(user=user, title=title, model=model)
        Message.objects.create(conversation=conversation, role="user", model=model, text=text)
    page = browser_page
    log_in(page, live_url, "finder")
    history = page.get_by_role("navigation", name="Conversations")
    expect(history.get_by_role("link")).to_have_count(2)
    search = page.get_by_role("searchbox", name="Search chats")

    search.fill("lisbon")  # the title, in another case
    expect(history.get_by_role("heading", name="Search results")).to_be_visible()
    expect(history.get_by_role("link")).to_have_text(["Trip to Lisbon"])

    search.fill("MARMALADE")  # words of a message
    expect(history.get_by_role("link")).to_have_text(["Quarterly budget"])

    search.fill("no chat says this")
    expect(history.get_by_text("No chats match your search.")).to_be_visible()
    expect(history.get_by_role("link")).to_have_count(0)

    search.press("Escape")
    expect(search).to_have_value("")
    expect(history.get_by_role("link")).to_have_count(2)

    search.fill("pastel de nata")
    history.get_by_role("link", name="Trip to Lisbon").click()
    expect(page.locator("article.msg-user .bubble")).to_have_text("Where should we eat pastel de nata?")


def test_the_picker_counts_down_what_is_left_and_disables_a_model_at_its_limit(live_url, browser_page, make_user, catalog):
    user = make_user("counted")
    apps.get_model("quotas", "QuotaOverride").objects.create(
        user=user, model=catalog["o1-mini"], messages=2, window_kind="anchored", window_length=1, window_unit="day"
    )
    page = browser_page
    log_in(page, live_url, "counted")

    def quota_line(picker, name: str):
        return picker.get_by_role("option", name=re.compile(f"^{name}")).locator(".model-option-quota")

    picker = open_picker(page)
    expect(picker.get_by_role("option")).to_have_count(3)
    # No window is open yet, so nothing to reset.
    for name, limit in [("o1-preview", 50), ("o1-mini", 2), ("GPT-4o", 80)]:
        expect(quota_line(picker, name)).to_have_text(f"{limit} left")
    picker.get_by_role("option", name=re.compile("^o1-mini")).click()
    expect(picker).to_be_hidden()
    hint = page.locator("#quota-hint")
    expect(hint).to_have_text(re.compile(r"^o1-mini · 2 left"))

    send(page, "One [sim:think=0]")
    finished(page)
    # The count drops by itself once the answer is sent; a window has opened, so it says when it resets.
    expect(hint).to_have_text(re.compile(r"^o1-mini · 1 left · resets \w{3} \d+ \w{3}, \d\d:\d\d$"))
    picker = open_picker(page)
    expect(quota_line(picker, "o1-mini")).to_have_text(re.compile(r"^1 left · resets \w{3} \d+ \w{3}, \d\d:\d\d$"))
    expect(quota_line(picker, "o1-preview")).to_have_text("50 left")
    expect(quota_line(picker, "GPT-4o")).to_have_text("80 left")
    page.keyboard.press("Escape")

    send(page, "Two [sim:think=0]")
    finished(page)
    expect(page.locator("article.msg-assistant")).to_have_count(2)

    expect(hint).to_have_text(re.compile(r"^o1-mini · Limit reached · resets "))
    picker = open_picker(page)
    mini = picker.get_by_role("option", name=re.compile("^o1-mini"))
    expect(quota_line(picker, "o1-mini")).to_have_text(re.compile(r"^Limit reached · resets \w{3} \d+ \w{3}, "))
    expect(mini).to_have_attribute("aria-disabled", "true")
    expect(picker.get_by_role("option", name=re.compile("^o1-preview"))).not_to_have_attribute("aria-disabled", "true")
    page.keyboard.press("Escape")


def test_a_second_tab_on_the_same_chat_follows_the_answer_live(live_url, browser_page, make_user):
    make_user("twotabs")
    first = browser_page
    log_in(first, live_url, "twotabs")
    send(first, "Opening line [sim:think=0]")
    finished(first)
    second = first.context.new_page()
    errors: list[str] = []
    second.on("pageerror", lambda exc: errors.append(str(exc)))
    second.goto(first.url)
    finished(second)

    text = "Stream to both tabs [sim:think=0] [sim:rate=30] [sim:tokens=60]"
    send(first, text)

    expect(second.locator("article.msg-user").last.locator(".bubble")).to_have_text(text)
    # Text arrives in the second tab while the answer is still being written.
    expect(second.locator("article.msg-assistant.is-live .md")).to_contain_text("You said: Stream to both tabs.")
    finished(first)
    finished(second)
    reply = stored_reply("twotabs", "done")
    for page in (first, second):
        expect(page.locator("article.msg-assistant")).to_have_count(2)
        expect(last_answer(page).locator(".md")).to_have_text(reply.text.strip())
    assert last_answer(first).locator(".md").inner_text() == last_answer(second).locator(".md").inner_text()
    second.close()
    assert not errors, f"JavaScript errors in the second tab: {errors}"


def test_a_dropped_connection_reconnects_and_resumes_the_answer_without_gap_or_duplicate(live_url, browser_page, make_user):
    """The socket drops mid-answer and the first reconnects fail; once back, the text on
    screen comes from the snapshot and later deltas only (the final `done` is held back)."""
    make_user("flaky")
    page = browser_page
    net = {"up": True, "sockets": [], "held_done": [], "snapshots": []}

    def handle(ws):
        if not net["up"]:
            ws.close(code=1011, reason="network down")
            return
        server = ws.connect_to_server()
        net["sockets"].append((ws, server))

        def downstream(message):
            frame = json.loads(message)
            if frame.get("type") == "snapshot":
                net["snapshots"].append(frame)
            if frame.get("type") == "done" and frame["message"]["role"] == "assistant":
                net["held_done"].append(message)
                return
            ws.send(message)

        ws.on_message(lambda message: server.send(message))
        server.on_message(downstream)

    page.route_web_socket(re.compile(r".*/ws/chat/$"), handle)
    log_in(page, live_url, "flaky")

    send(page, "Keep talking [sim:think=0] [sim:rate=30] [sim:tokens=150]")
    answer = last_answer(page)
    expect(answer.locator(".md")).to_contain_text("You said: Keep talking.")
    reply_id = int(answer.get_attribute("data-id"))

    net["up"] = False
    net["snapshots"].clear()
    for ws, server in net["sockets"]:
        ws.close(code=1011, reason="network down")
        server.close()
    before = answer.locator(".md").inner_text()
    banner = page.get_by_role("status").filter(has_text="Reconnecting…")
    expect(banner).to_be_visible()
    # The answer goes on without the page: wait for a checkpoint of text the page never got.
    Message = apps.get_model("chat", "Message")
    wait_until(lambda: len(Message.objects.get(id=reply_id).text) > len(before) + 20, what="the answer to go on")
    net["up"] = True

    expect(banner).to_be_hidden()
    reply = stored_reply("flaky", "done")
    assert reply.id == reply_id
    expect(answer.locator(".md")).to_have_text(reply.text.strip())
    # The snapshot on reconnecting carried what was missed while offline, and deltas followed.
    [resumed] = net["snapshots"]
    assert resumed["messages"][-1]["id"] == reply.id
    assert resumed["messages"][-1]["status"] == "streaming", "the answer ended before the page reconnected"
    assert len(resumed["messages"][-1]["text"]) > len(before)

    # page.evaluate lets Playwright run the socket handlers while we wait.
    wait_until(lambda: page.evaluate("true") and net["held_done"], what="the held-back done frame")
    net["sockets"][-1][0].send(net["held_done"][-1])
    finished(page)
    expect(answer.locator(".md")).to_have_text(reply.text.strip())


def test_on_a_phone_the_history_hides_behind_a_menu_and_the_composer_works(live_url, browser_page, make_user):
    make_user("pocket")
    page = browser_page
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_url, "pocket")
    menu = page.get_by_role("button", name="Open chat history")
    search = page.get_by_role("searchbox", name="Search chats")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(search).to_be_hidden()

    box = page.get_by_label("Message", exact=True)
    box.fill("Hello from my phone [sim:think=0]")
    page.get_by_role("button", name="Send").click()

    expect(last_answer(page).locator(".md")).to_contain_text("You said: Hello from my phone.")
    finished(page)
    for locator in (box, page.locator("article.msg-user .bubble"), last_answer(page)):
        bounds = locator.bounding_box()
        assert bounds["x"] >= 0 and bounds["x"] + bounds["width"] <= 390, bounds
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing scrolls sideways

    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(search).to_be_visible()
    chat = page.get_by_role("link", name="Hello from my phone [sim:think=0]")
    expect(chat).to_be_visible()
    page.get_by_role("button", name="Close chat history").click()
    expect(search).to_be_hidden()

    menu.click()
    page.get_by_role("link", name="New chat").click()
    expect(search).to_be_hidden()
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()
    expect(page.locator("article.msg")).to_have_count(0)


def test_enter_sends_and_shift_enter_starts_a_new_line(live_url, browser_page, make_user):
    make_user("typist")
    page = browser_page
    log_in(page, live_url, "typist")
    box = page.get_by_label("Message", exact=True)

    box.press("Enter")  # nothing to send
    box.press_sequentially("First line")
    box.press("Shift+Enter")
    box.press_sequentially("second line [sim:think=0]")
    expect(box).to_have_value("First line\nsecond line [sim:think=0]")
    expect(page.locator("article.msg")).to_have_count(0)

    box.press("Enter")

    bubble = page.locator("article.msg-user .bubble")
    expect(bubble).to_have_count(1)
    assert bubble.inner_text() == "First line\nsecond line [sim:think=0]"  # shown on two lines
    expect(box).to_have_value("")
    expect(last_answer(page).locator(".md")).to_contain_text("You said: First line second line.")
    finished(page)
