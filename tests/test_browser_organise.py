"""Math, sharing and organising chats (issue 14), in Debian's Chromium against the live stack."""

import json

from django.apps import apps
from playwright.sync_api import Page, expect

from tests.helpers import log_in, wait_until

ANSWER = """The area of a circle is $A = \\pi r^2$, or \\(2\\pi r\\) around it. It costs $5 and $10.

$$
\\int_0^1 x^2\\,dx = \\frac{1}{3}
$$

\\[ e^{i\\pi} + 1 = 0 \\]

```python
price = "$x$"  # not math
```

Bad: $\\frac{1}{$ and $<img src=x onerror=alert(1)>$."""


def chat_with_math(user, model, *, title="Circles"):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    conversation = Conversation.objects.create(user=user, title=title, model=model)
    asked = Message.objects.create(conversation=conversation, role="user", model=model, text="What is the area of a circle?")
    Message.objects.create(
        parent=asked,
        conversation=conversation,
        role="assistant",
        model=model,
        text=ANSWER,
        reasoning="Recall the formula.",
        thinking_ms=14_200,
    )
    return conversation


def csp_violations(page: Page) -> list[str]:
    found: list[str] = []
    page.on("console", lambda message: found.append(message.text) if "Content Security Policy" in message.text else None)
    return found


def history(page: Page):
    return page.get_by_role("navigation", name="Conversations")


def chat_options(page: Page, item: str) -> None:
    page.get_by_role("button", name="Chat options").click()
    page.get_by_role("menuitem", name=item).click()


def test_formulas_are_typeset_with_katex_and_code_keeps_its_dollars_highlighting_and_copy(live_url, browser_page, make_user, catalog):
    user = make_user("mathematician")
    conversation = chat_with_math(user, catalog["o1-preview"])
    page = browser_page
    violations = csp_violations(page)
    fonts: list[str] = []
    page.on("response", lambda r: fonts.append(f"{r.status} {r.url}") if "/fonts/KaTeX_" in r.url else None)
    log_in(page, live_url, "mathematician")
    page.goto(f"{live_url}/c/{conversation.id}/")

    answer = page.locator("article.msg-assistant .md")
    expect(answer.locator(".katex")).to_have_count(5)  # three inline, two displayed
    expect(answer.locator(".katex-display")).to_have_count(2)
    expect(answer.locator(".katex-mathml annotation").first).to_have_text("A = \\pi r^2")
    expect(answer).to_contain_text("It costs $5 and $10.")
    code = answer.locator(".code-block code")
    expect(code).to_have_text('price = "$x$"  # not math\n')
    expect(code.locator(".hljs-string")).to_have_text('"$x$"')
    expect(answer.locator(".code-block .katex")).to_have_count(0)
    expect(answer.get_by_role("button", name="Copy python code")).to_be_visible()
    expect(answer.locator(".math-error")).to_have_count(1)
    expect(answer.locator(".math-error")).to_have_text("\\frac{1}{")
    # Markup in a formula is TeX to KaTeX: typeset as symbols, never an element.
    expect(answer.locator(".katex-mathml annotation").last).to_have_text("<img src=x onerror=alert(1)>")
    expect(answer.locator("img")).to_have_count(0)
    expect(page.locator("article.msg-assistant .reasoning-label")).to_have_text("Thought for 14 seconds")

    page.wait_for_load_state("networkidle")
    assert fonts and all(f.startswith("200 ") and f.split(" ", 1)[1].startswith(live_url) for f in fonts), fonts
    assert page.evaluate("document.fonts.check('16px KaTeX_Main')")
    assert not violations, violations


def test_a_shared_link_shows_the_chat_logged_out_and_stops_when_sharing_stops(live_url, browser, browser_page, make_user, catalog):
    user = make_user("ada-sharer")
    conversation = chat_with_math(user, catalog["o1-preview"], title="Circles for the team")
    page = browser_page
    log_in(page, live_url, "ada-sharer")
    page.goto(f"{live_url}/c/{conversation.id}/")
    chat_options(page, "Share…")
    dialog = page.get_by_role("dialog", name="Share chat")
    expect(dialog).to_be_visible()
    url = dialog.get_by_label("Share link").input_value()
    assert url.startswith(f"{live_url}/share/"), url

    stranger = browser.new_context()
    shared = stranger.new_page()
    violations = csp_violations(shared)
    shared.goto(url)
    expect(shared.get_by_role("heading", name="Circles for the team")).to_be_visible()
    expect(shared.get_by_text("What is the area of a circle?")).to_be_visible()
    expect(shared.locator(".md .katex-display")).to_have_count(2)
    expect(shared.locator(".reasoning-label")).to_have_text("Thought for 14 seconds")
    expect(shared.locator("body")).not_to_contain_text("ada-sharer")
    expect(shared.locator("textarea, form, .model-picker")).to_have_count(0)
    assert not violations, violations

    dialog.get_by_role("button", name="Stop sharing").click()
    expect(dialog).to_contain_text("Sharing stopped")
    assert shared.reload().status == 404
    stranger.close()


def test_pinned_chats_sit_on_top_and_archived_ones_behind_the_archived_toggle(live_url, browser_page, make_user, catalog):
    user = make_user("organiser")
    first = chat_with_math(user, catalog["o1-mini"], title="First chat")
    chat_with_math(user, catalog["o1-mini"], title="Second chat")
    page = browser_page
    log_in(page, live_url, "organiser")

    page.goto(f"{live_url}/c/{first.id}/")
    chat_options(page, "Pin chat")
    pinned = page.get_by_role("list", name="Pinned")
    expect(pinned.get_by_role("link", name="First chat")).to_be_visible()
    expect(history(page).get_by_role("link").first).to_have_text("First chat")

    chat_options(page, "Archive chat")
    expect(history(page).get_by_role("link", name="First chat")).to_have_count(0)
    toggle = page.get_by_role("button", name="Show archived (1)")
    toggle.click()
    expect(page.get_by_role("list", name="Hide archived (1)").get_by_role("link", name="First chat")).to_be_visible()
    Conversation = apps.get_model("chat", "Conversation")
    wait_until(lambda: Conversation.objects.filter(id=first.id, pinned=True, archived=True).exists(), what="pinned and archived stored")

    page.reload()
    expect(history(page).get_by_role("link", name="First chat")).to_have_count(0)
    chat_options(page, "Unarchive chat")
    expect(page.get_by_role("list", name="Pinned").get_by_role("link", name="First chat")).to_be_visible()


def test_a_chat_exported_as_json_imports_from_the_sidebar_and_opens(live_url, browser_page, make_user, catalog, tmp_path):
    user = make_user("importer")
    conversation = chat_with_math(user, catalog["o1-preview"], title="Worth keeping")
    page = browser_page
    log_in(page, live_url, "importer")
    page.goto(f"{live_url}/c/{conversation.id}/")

    page.get_by_role("button", name="Chat options").click()
    with page.expect_download() as download:
        page.get_by_role("menuitem", name="Export as JSON").click()
    assert download.value.suggested_filename == "Worth-keeping.json"
    path = tmp_path / "chat.json"
    download.value.save_as(path)
    assert json.loads(path.read_text())["title"] == "Worth keeping"
    page.get_by_role("button", name="Chat options").click()
    with page.expect_download() as markdown:
        page.get_by_role("menuitem", name="Export as Markdown").click()
    assert markdown.value.suggested_filename == "Worth-keeping.md"

    page.get_by_label("Import chat").set_input_files(path)
    expect(page).not_to_have_url(f"{live_url}/c/{conversation.id}/")
    expect(page.locator("article.msg-assistant .katex-display")).to_have_count(2)
    expect(history(page).get_by_role("link", name="Worth keeping")).to_have_count(2)

    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": "world"}')
    page.get_by_label("Import chat").set_input_files(bad)
    expect(page.get_by_role("alert").filter(has_text="Could not import the chat")).to_contain_text("not an exported conversation")


def test_sign_up_starts_from_the_browsers_time_zone_and_a_signed_in_login_goes_to_the_chat(live_url, browser, make_user):
    SignupPolicy = apps.get_model("accounts", "SignupPolicy")
    SignupPolicy.objects.update_or_create(id=SignupPolicy.SINGLE_ID, defaults={"mode": "open"})
    context = browser.new_context(timezone_id="Europe/Paris")
    page = context.new_page()
    page.goto(f"{live_url}/accounts/signup/")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Paris")
    page.get_by_label("Username").fill("newcomer")
    page.get_by_label("Password:", exact=True).fill("a-long-pass-123")
    page.get_by_label("Password confirmation").fill("a-long-pass-123")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="What can I help with?")).to_be_visible()
    assert apps.get_model("accounts", "Profile").objects.get(user__username="newcomer").time_zone == "Europe/Paris"

    page.goto(f"{live_url}/accounts/login/")
    expect(page).to_have_url(f"{live_url}/")
    context.close()


HOSTILE_MATH = [
    "$\\href{javascript:window.__pwned=1}{click}$",
    '$$</span><img src=x onerror="window.__pwned=2">$$',
    "\\(\\htmlId{app}{x}\\htmlClass{md}{y}\\htmlStyle{position:fixed}{z}\\)",
    "\\[\\url{javascript:window.__pwned=3}\\]",
    '<span class="math" data-math="inline">\\href{javascript:window.__pwned=4}{raw}</span>',
]

# Anything executable, linked, styled or named in the answer's elements.
SCAN = """(root) => [...root.querySelectorAll("*")].flatMap((node) => [...node.attributes]
  .filter((a) => a.name.startsWith("on") || a.name === "href" || a.name === "id" || a.name === "src"
    || (a.name === "style" && /position|background/.test(a.value)))
  .map((a) => `${node.tagName} ${a.name}=${a.value}`))"""


def test_formulas_cannot_make_links_markup_ids_or_styles(live_url, browser_page, make_user, catalog):
    user = make_user("mallory-math")
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    model = catalog["o1-mini"]
    conversation = Conversation.objects.create(user=user, title="Hostile formulas", model=model)
    asked = Message.objects.create(conversation=conversation, role="user", model=model, text="Show me")
    Message.objects.create(
        parent=asked, conversation=conversation, role="assistant", model=model, text="\n\n".join([*HOSTILE_MATH, "End."])
    )
    page = browser_page
    log_in(page, live_url, "mallory-math")
    page.goto(f"{live_url}/c/{conversation.id}/")

    answer = page.locator("article.msg-assistant .md")
    expect(answer).to_contain_text("End.")
    expect(answer.locator(".katex, .math-error")).to_have_count(len(HOSTILE_MATH))  # typeset, or shown as TeX
    assert answer.evaluate(SCAN) == []
    expect(answer.locator("a, img, script")).to_have_count(0)
    assert page.evaluate("typeof window.__pwned") == "undefined"
