"""Small things a new user hit (issue 14), in Debian's Chromium against the live stack:
a rename that swallowed the next click, the edit box's keys, the staff links, the
favicon, a deleted chat's URL, the theme switch, and the quota notices."""

import re

from django.apps import apps
from django.test import Client
from django.urls import reverse
from playwright.sync_api import Page, expect

from config.middleware import POLICY
from tests.helpers import last_answer, log_in, wait_until
from tests.helpers import type_and_send as send

MISSING = "This chat does not exist or was deleted."
# A person's click: the button is held a moment, long enough for the server to answer in between.
HUMAN_CLICK_MS = 250


def finished(page: Page) -> None:
    expect(last_answer(page).locator(".msg-foot")).to_be_visible(timeout=20_000)


def chat_with_question(user, model, title: str):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    conversation = Conversation.objects.create(user=user, title=title, model=model)
    Message.objects.create(conversation=conversation, role="user", model=model, text=f"Question of {title}")
    return conversation


def history(page: Page):
    return page.get_by_role("navigation", name="Conversations")


def limit(user, model, messages: int):
    QuotaOverride = apps.get_model("quotas", "QuotaOverride")
    QuotaOverride.objects.update_or_create(
        user=user,
        model=model,
        defaults={"messages": messages, "window_kind": "anchored", "window_length": 7, "window_unit": "day"},
    )


# --- Rename ---------------------------------------------------------------------------


def test_clicking_another_chat_while_renaming_saves_the_title_and_opens_that_chat(live_url, browser_page, make_user, catalog):
    user = make_user("renamer")
    chat_with_question(user, catalog["o1-mini"], "Apples")
    pears = chat_with_question(user, catalog["o1-mini"], "Pears")
    page = browser_page
    log_in(page, live_url, "renamer")

    history(page).get_by_role("listitem").filter(has_text="Apples").hover()
    page.get_by_role("button", name="Rename “Apples”").click()
    page.get_by_label("New title").fill("Green apples")
    history(page).get_by_role("link", name="Pears").click(delay=HUMAN_CLICK_MS)

    expect(page).to_have_url(f"{live_url}/c/{pears.id}/")
    expect(page.locator("article.msg-user .bubble")).to_have_text("Question of Pears")
    expect(history(page).get_by_role("link", name="Green apples")).to_be_visible()
    Conversation = apps.get_model("chat", "Conversation")
    wait_until(lambda: Conversation.objects.filter(user=user, title="Green apples").exists(), what="the new title stored")


def test_deleting_another_chat_while_renaming_asks_about_that_chat(live_url, browser_page, make_user, catalog):
    user = make_user("tidier")
    chat_with_question(user, catalog["o1-mini"], "Apples")
    chat_with_question(user, catalog["o1-mini"], "Pears")
    page = browser_page
    log_in(page, live_url, "tidier")

    history(page).get_by_role("listitem").filter(has_text="Apples").hover()
    page.get_by_role("button", name="Rename “Apples”").click()
    page.get_by_label("New title").fill("Apples, unchanged")
    page.get_by_label("New title").press("Escape")  # abandoning the rename is no different
    expect(history(page).get_by_role("link", name="Apples", exact=True)).to_be_visible()
    page.get_by_role("button", name="Rename “Apples”").click()
    expect(page.get_by_label("New title")).to_be_focused()
    history(page).get_by_role("listitem").filter(has_text="Pears").hover()
    page.get_by_role("button", name="Delete “Pears”").click(delay=HUMAN_CLICK_MS)

    dialog = page.get_by_role("dialog", name="Delete chat?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("This will delete “Pears”")
    dialog.get_by_role("button", name="Cancel").click()
    expect(history(page).get_by_role("link")).to_have_text(["Pears", "Apples"])


# --- The edit box -----------------------------------------------------------------------


def test_the_edit_box_sends_with_enter_and_adds_a_line_with_shift_enter_as_its_hint_says(live_url, browser_page, make_user):
    make_user("reviser")
    page = browser_page
    log_in(page, live_url, "reviser")
    send(page, "First try [sim:think=0]")
    finished(page)

    question = page.locator("article.msg-user")
    question.hover()
    question.get_by_role("button", name="Edit message").click()
    box = page.get_by_label("Edit your message")
    expect(question.get_by_text("Enter to send · Shift+Enter for a new line · Esc to cancel")).to_be_visible()
    expect(box).to_have_accessible_description("Enter to send · Shift+Enter for a new line · Esc to cancel")
    box.fill("Line one")
    box.press("Shift+Enter")
    box.press_sequentially("Line two [sim:think=0]")
    expect(box).to_have_value("Line one\nLine two [sim:think=0]")  # still editing: Shift+Enter only added a line

    box.press("Enter")

    expect(box).to_have_count(0)
    expect(page.locator("article.msg-user .bubble")).to_have_text("Line one\nLine two [sim:think=0]")
    expect(last_answer(page).locator(".md")).to_contain_text("Line two", timeout=20_000)
    finished(page)
    expect(page.locator("article.msg")).to_have_count(2)


# --- Favicon -------------------------------------------------------------------------------


def test_pages_have_a_favicon_and_load_without_a_404(live_url, browser_page, make_user):
    make_user("iconic")
    page = browser_page
    failed: list[str] = []
    page.on("response", lambda response: failed.append(f"{response.status} {response.url}") if response.status >= 400 else None)

    page.goto(f"{live_url}/accounts/login/")
    log_in(page, live_url, "iconic")
    page.reload()
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()

    href = page.locator("link[rel=icon]").get_attribute("href")
    assert href and href.startswith("/static/"), href
    icon = page.request.get(f"{live_url}{href}")
    assert icon.status == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert "<svg" in icon.text()
    page.wait_for_load_state("networkidle")
    assert not failed, failed


# --- A chat that is not there ----------------------------------------------------------------


def test_a_deleted_or_someone_elses_chat_url_shows_a_new_chat_with_a_notice(live_url, browser_page, make_user, catalog):
    me, other = make_user("wanderer"), make_user("owner")
    theirs = chat_with_question(other, catalog["o1-mini"], "Not yours")
    mine = chat_with_question(me, catalog["o1-mini"], "Soon gone")
    gone = mine.id
    mine.delete()
    page = browser_page
    log_in(page, live_url, "wanderer")

    for url in (f"{live_url}/c/{gone}/", f"{live_url}/c/{theirs.id}/"):
        response = page.goto(url)
        assert response.status == 404
        expect(page.get_by_role("status").filter(has_text=MISSING)).to_be_visible()
        expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()
        expect(page.get_by_text("Page not found")).to_have_count(0)
        expect(page.get_by_text("Not yours")).to_have_count(0)
        expect(page).to_have_url(f"{live_url}/")  # the address says what is shown: a new chat

    send(page, "Then a new one [sim:think=0]")
    expect(page.get_by_text(MISSING)).to_be_hidden()
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    finished(page)


def test_a_missing_chat_and_someone_elses_get_the_same_answer(catalog, make_user):
    me, other = make_user(), make_user()
    theirs = chat_with_question(other, catalog["o1-mini"], "Their secret plan")
    missing = theirs.id + 1000
    client = Client()
    client.force_login(me)

    def page_for(conversation_id: int) -> tuple[int, str]:
        response = client.get(reverse("chat-conversation", args=[conversation_id]))
        # The only difference allowed: the CSRF token is masked anew on every page.
        return response.status_code, re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())

    assert page_for(theirs.id) == page_for(missing)
    status, body = page_for(theirs.id)
    assert status == 404
    assert MISSING in body
    assert "Their secret plan" not in body


# --- Staff links -------------------------------------------------------------------------


def test_staff_find_the_admin_and_usage_pages_from_the_chat_and_others_do_not(live_url, browser_page, make_user, staff_user):
    make_user("plain")
    page = browser_page
    log_in(page, live_url, "plain")
    expect(page.get_by_role("navigation", name="Staff")).to_have_count(0)
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    expect(page.get_by_role("link", name="Usage")).to_have_count(0)

    page.context.clear_cookies()
    log_in(page, live_url, staff_user.username)
    staff = page.get_by_role("navigation", name="Staff")
    expect(staff.get_by_role("link", name="Admin")).to_have_attribute("href", "/admin/")
    staff.get_by_role("link", name="Usage").click()
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    page.go_back()
    page.get_by_role("navigation", name="Staff").get_by_role("link", name="Admin").click()
    expect(page).to_have_url(f"{live_url}/admin/")
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


# --- Theme ------------------------------------------------------------------------------------

DARK_BG = "rgb(31, 31, 30)"
LIGHT_BG = "rgb(255, 255, 255)"


def background(page: Page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


def test_the_theme_switch_picks_light_dark_or_system_and_remembers_it_before_paint(live_url, browser_page, make_user):
    make_user("nightowl")
    page = browser_page
    page.emulate_media(color_scheme="light")
    log_in(page, live_url, "nightowl")
    theme = page.get_by_role("group", name="Theme")
    expect(theme.get_by_role("radio", name="System")).to_be_checked()
    assert background(page) == LIGHT_BG

    theme.get_by_text("Dark").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert background(page) == DARK_BG
    assert page.locator("link[data-theme-for=dark]").get_attribute("media") == "all"  # highlighted code follows

    # Remembered, and set by the script in <head>: even without the chat's modules the page is dark.
    page.route("**/js/chat/main.js", lambda route: route.abort())
    response = page.reload()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    assert background(page) == DARK_BG
    assert response.headers["content-security-policy"] == POLICY  # no inline script was needed
    page.unroute("**/js/chat/main.js")
    page.reload()
    expect(page.get_by_role("group", name="Theme").get_by_role("radio", name="Dark")).to_be_checked()

    theme = page.get_by_role("group", name="Theme")
    theme.get_by_text("System").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    page.emulate_media(color_scheme="dark")  # the system changes: the page follows
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    theme.get_by_text("Light").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert background(page) == LIGHT_BG

    page.goto(f"{live_url}/accounts/profile/")  # every page follows the choice
    assert page.evaluate("document.documentElement.dataset.theme") == "light"


# --- Quota at a glance ---------------------------------------------------------------------------


def test_a_send_refused_for_quota_marks_the_model_at_its_limit_at_once(live_url, browser_page, make_user, catalog):
    user = make_user("stale")
    limit(user, catalog["o1-preview"], 47)
    page = browser_page
    log_in(page, live_url, "stale")
    hint = page.locator("#quota-hint")
    model_button = page.get_by_role("button", name=re.compile("^Model:"))
    expect(hint).to_have_text("o1-preview · 47 left")
    limit(user, catalog["o1-preview"], 0)  # staff lower the limit; this page has not heard

    send(page, "Still allowed? [sim:think=0]")

    banner = page.get_by_role("alert").filter(has_text="limit reached")
    expect(banner).to_be_visible()
    expect(hint).to_have_text("o1-preview · Limit reached")
    expect(model_button).to_have_class(re.compile(r"\bis-exhausted\b"))
    model_button.click()
    option = page.get_by_role("option", name=re.compile("^o1-preview"))
    expect(option).to_have_attribute("aria-disabled", "true")
    expect(option).to_contain_text("Limit reached")


def test_a_few_messages_left_are_announced_above_the_box_until_dismissed(live_url, browser_page, make_user, catalog):
    user = make_user("counting")
    limit(user, catalog["o1-preview"], 6)
    page = browser_page
    log_in(page, live_url, "counting")
    notice = page.get_by_role("status").filter(has_text="messages left")
    expect(page.locator("#quota-hint")).to_have_text("o1-preview · 6 left")
    expect(notice).to_have_count(0)

    send(page, "One of six [sim:think=0]")
    finished(page)

    expect(notice).to_be_visible()
    text = notice.locator("p")
    expect(text).to_have_text(re.compile(r"^5 o1-preview messages left until \w{3} \d+ \w{3}, \d\d:\d\d$"))
    reset = re.search(r"until (.*)$", text.inner_text()).group(1)
    expect(page.locator("#quota-hint")).to_have_text(f"o1-preview · 5 left · resets {reset}")
    expect(page.get_by_role("alert")).to_have_count(0)  # not the at-limit banner

    notice.get_by_role("button", name="Dismiss notice").click()
    expect(notice).to_have_count(0)
    send(page, "Two of six [sim:think=0]")
    finished(page)
    expect(page.locator("#quota-hint")).to_have_text(f"o1-preview · 4 left · resets {reset}")
    expect(page.get_by_text("messages left until")).to_be_hidden()  # dismissed stays dismissed
