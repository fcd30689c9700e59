"""The README's screenshots, taken from the live stack (ASGI server, Celery worker,
simulator; fixtures in conftest.py) in Debian's Chromium, into docs/screenshots/.

Run with `make screenshots`. Not part of `make test`: the file name does not match
`test_*.py`, and pytest collects it only when it is named on the command line."""

import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.apps import apps
from django.db.models import F
from PIL import Image, ImageDraw
from playwright.sync_api import Page, expect

from chat.actions import message_send
from tests.helpers import last_answer, log_in, wait_until
from tests.helpers import type_and_send as send

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
EARLIER_CHATS = [
    "Proof that the square root of 2 is irrational",
    "Refactor the billing cron job",
    "Summarise the Q3 incident report",
    "SQL for the weekly retention cohort",
]


@contextmanager
def browsing(browser, *, viewport=DESKTOP, color_scheme="light", storage_state=None) -> Iterator[Page]:
    context = browser.new_context(
        viewport=viewport,
        color_scheme=color_scheme,
        device_scale_factor=1,
        storage_state=storage_state,
        reduced_motion="reduce",
    )
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shoot(page: Page, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, page.viewport_size["height"] - 1)  # no hover effects
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring
    page.screenshot(path=OUT / name, animations="disabled", caret="hide")


def earlier_chats(user, model) -> None:
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    for title in EARLIER_CHATS:
        conversation = Conversation.objects.create(user=user, title=title, model=model)
        Message.objects.create(conversation=conversation, role="user", model=model, text=title)


def test_desktop_light_dark_and_phone(live_url, browser, make_user, catalog):
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    with browsing(browser) as page:
        log_in(page, live_url, "ada")
        send(page, "Write a Python function that greets someone by name, and show it as markdown.")
        answer = last_answer(page)
        expect(answer.locator(".code-block code.hljs .hljs-keyword").first).to_have_text("def")
        expect(answer.locator(".msg-foot")).to_be_visible()
        url = page.url
        state = page.context.storage_state()
        shoot(page, "desktop-light.png")

    with browsing(browser, color_scheme="dark", storage_state=state) as page:
        page.goto(url)
        expect(last_answer(page).locator(".code-block code.hljs .hljs-keyword").first).to_have_text("def")
        shoot(page, "desktop-dark.png")

    with browsing(browser, viewport=PHONE, storage_state=state) as page:
        page.goto(url)
        expect(last_answer(page).locator(".code-block code.hljs .hljs-keyword").first).to_have_text("def")
        shoot(page, "phone.png")


def test_thinking(live_url, browser, make_user, catalog):
    """A long think without a directive in the message: the page is kept from hearing
    the answer (its text deltas are held back), so it shows what a slow model looks like."""
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    with browsing(browser) as page:

        def handle(ws):
            server = ws.connect_to_server()
            ws.on_message(lambda message: server.send(message))
            server.on_message(lambda message: None if json.loads(message)["type"] in ("delta", "done") else ws.send(message))

        page.route_web_socket(re.compile(r".*/ws/chat/$"), handle)
        log_in(page, live_url, "ada")
        send(page, "Is there a closed form for the number of spanning trees of a 3×n grid graph?")
        expect(last_answer(page).locator("details.reasoning summary")).to_have_text("Thinking… 4s", timeout=10_000)
        shoot(page, "thinking.png")


def test_quota_exhausted(live_url, browser, make_user, catalog):
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    apps.get_model("quotas", "QuotaOverride").objects.create(
        user=user, model=catalog["o1-preview"], messages=1, window_kind="anchored", window_length=7, window_unit="day"
    )
    with browsing(browser) as page:
        log_in(page, live_url, "ada")
        send(page, "Prove that there are infinitely many primes.")
        expect(last_answer(page).locator(".msg-foot")).to_be_visible()
        send(page, "And are there infinitely many twin primes?")
        banner = page.get_by_role("alert").filter(has_text="limit reached")
        expect(banner.get_by_role("button", name="Switch to o1-mini")).to_be_visible()
        shoot(page, "quota-exhausted.png")


def test_admin_dashboard(live_url, browser, make_user, catalog):
    """Usage from real sends (the worker answers them through the simulator); the ledger
    entries are then spread over the past week so the daily chart shows a week."""
    Message = apps.get_model("chat", "Message")
    LedgerEntry = apps.get_model("quotas", "LedgerEntry")
    admin = make_user("admin", is_staff=True)
    admin.is_superuser = True  # the dashboard also needs permission to read the quota ledger
    admin.save()
    rounds = {"ada": 9, "grace": 7, "linus": 5, "margaret": 4, "alan": 3, "edsger": 2}
    users = {name: make_user(name) for name in rounds}
    apps.get_model("quotas", "QuotaOverride").objects.create(  # someone at their limit
        user=users["linus"],
        model=catalog["o1-preview"],
        messages=2,
        window_kind="anchored",
        window_length=7,
        window_unit="day",
    )
    models = ["o1-preview", "o1-mini", "gpt-4o"]
    conversations: dict[str, int | None] = dict.fromkeys(rounds)
    for n in range(max(rounds.values())):
        for name, user in users.items():
            if n < rounds[name]:
                _, reply = message_send(
                    user=user, conversation_id=conversations[name], model_slug=models[n % 3], text=f"Question {n + 1} from {name}"
                )
                conversations[name] = reply.conversation_id
        wait_until(
            lambda: not Message.objects.filter(status__in=["pending", "streaming"]).exists(), timeout=30, what="this round of answers"
        )
    replies = Message.objects.filter(role="assistant").order_by("id")
    for i, reply in enumerate(replies):
        LedgerEntry.objects.filter(reply_id=reply.id).update(created_at=F("created_at") - timedelta(days=(i * 3) % 7))
    with browsing(browser) as page:
        log_in(page, live_url, "admin")
        page.goto(f"{live_url}/usage/?days=7")
        expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
        page.wait_for_function("() => window.Chart && Object.keys(window.Chart.instances).length >= 3")
        shoot(page, "admin-dashboard.png")


def test_theme_switch_dark(live_url, browser, make_user, catalog):
    """The system is light; the user picked Dark in the sidebar's switch."""
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    with browsing(browser) as page:
        log_in(page, live_url, "ada")
        page.get_by_role("group", name="Theme").get_by_text("Dark").click()
        send(page, "Write a Python function that greets someone by name, and show it as markdown.")
        answer = last_answer(page)
        expect(answer.locator(".code-block code.hljs .hljs-keyword").first).to_have_text("def")
        expect(answer.locator(".msg-foot")).to_be_visible()
        shoot(page, "theme-dark.png")


def test_few_left(live_url, browser, make_user, catalog):
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    apps.get_model("quotas", "QuotaOverride").objects.create(
        user=user, model=catalog["o1-preview"], messages=6, window_kind="anchored", window_length=7, window_unit="day"
    )
    with browsing(browser) as page:
        log_in(page, live_url, "ada")
        send(page, "Prove that there are infinitely many primes.")
        expect(last_answer(page).locator(".msg-foot")).to_be_visible()
        expect(page.get_by_role("status").filter(has_text="5 o1-preview messages left until")).to_be_visible()
        shoot(page, "few-left.png")


def test_api_keys(live_url, browser, make_user, catalog):
    from api.services import api_key_create
    from quotas.models import Plan

    Plan.objects.filter(is_default=True).update(api_access=True)
    user = make_user("demo")
    api_key_create(user=user, name="notebook experiments")
    with browsing(browser) as page:
        log_in(page, live_url, "demo")
        page.goto(f"{live_url}/accounts/api-keys/")
        page.get_by_label("Name").fill("laptop scripts")
        page.get_by_role("button", name="Create key").click()
        expect(page.get_by_text("copy it now")).to_be_visible()
        shoot(page, "api-keys.png")


def bar_chart() -> bytes:
    """A small picture to attach: four bars on a white card."""
    image = Image.new("RGB", (480, 300), "white")
    draw = ImageDraw.Draw(image)
    draw.line([(40, 260), (450, 260)], fill=(120, 120, 120), width=2)
    for i, (height, colour) in enumerate([(120, (66, 133, 244)), (170, (66, 133, 244)), (90, (234, 67, 53)), (210, (52, 168, 83))]):
        left = 70 + i * 95
        draw.rectangle([left, 260 - height, left + 60, 258], fill=colour)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


SALES = b"quarter,region,revenue\nQ1,north,120\nQ2,north,170\nQ3,north,90\nQ4,north,210\n"


def test_attachments(live_url, browser, make_user, catalog):
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    with browsing(browser) as page:
        log_in(page, live_url, "ada")
        page.get_by_role("button", name=re.compile("^Model:")).click()
        page.get_by_role("option", name=re.compile("^GPT-4o")).click()
        page.locator("#attach-input").set_input_files(
            [
                {"name": "q-revenue.png", "mimeType": "image/png", "buffer": bar_chart()},
                {"name": "sales.csv", "mimeType": "text/csv", "buffer": SALES},
            ]
        )
        files = page.get_by_role("list", name="Files to send")
        expect(files).to_contain_text("sales.csv")
        expect(files).to_contain_text("q-revenue.png")
        expect(files).not_to_contain_text("uploading")
        send(page, "Here are last year's revenue chart and the numbers behind it. Why did Q3 dip?")
        expect(last_answer(page).locator(".msg-foot")).to_be_visible(timeout=20_000)
        page.locator("#attach-input").set_input_files([{"name": "incident-notes.md", "mimeType": "text/markdown", "buffer": b"# Q3\n"}])
        expect(files).to_contain_text("incident-notes.md")
        expect(files).not_to_contain_text("uploading")
        page.get_by_label("Message", exact=True).fill("Does the incident report explain it?")
        shoot(page, "attachments.png")


def test_model_controls(live_url, browser, make_user, catalog):
    """A reasoning model that takes an effort: the effort beside the send button and in the footer."""
    model, _ = apps.get_model("catalog", "AIModel").objects.update_or_create(
        slug="o4-mini",
        defaults=dict(
            name="o4-mini",
            provider_model="o4-mini",
            description="Fast, affordable reasoning; takes images.",
            api="responses",
            context_window=200_000,
            max_output_tokens=100_000,
            supports_system_message=True,
            tokenizer="o200k_base",
            reasoning_efforts="low,medium,high",
            reasoning_summaries=True,
            enabled=True,
            display_order=5,
        ),
    )
    plan = apps.get_model("quotas", "Plan").objects.get(is_default=True)
    apps.get_model("quotas", "PlanLimit").objects.create(plan=plan, model=model, messages=50, window_kind="anchored")
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    with browsing(browser) as page:
        log_in(page, live_url, "ada")
        page.get_by_label("Reasoning effort").select_option("high")
        send(page, "Why is the sky blue? [sim:reasoning] [sim:think=2] [sim:tokens=60]")
        expect(last_answer(page).locator(".msg-meta")).to_contain_text("o4-mini · High effort", timeout=20_000)
        last_answer(page).locator("details.reasoning summary").click()
        shoot(page, "model-controls.png")


MATH_ANSWER = r"""The sum of the first $n$ odd numbers is a perfect square:

$$
\sum_{k=1}^{n} (2k-1) = n^2
$$

**Proof by induction.** For $n = 1$ both sides are $1$. Assume it holds for $n$; then

\[
\sum_{k=1}^{n+1} (2k-1) = n^2 + (2n + 1) = (n+1)^2 .
\]

A quick check in Python:

```python
assert all(sum(2 * k - 1 for k in range(1, n + 1)) == n**2 for n in range(1, 100))
```

So the $n$-th square is the sum of the first $n$ odd numbers, e.g. $1 + 3 + 5 + 7 = 16 = 4^2$."""


def math_chat(user, model):
    Conversation = apps.get_model("chat", "Conversation")
    Message = apps.get_model("chat", "Message")
    conversation = Conversation.objects.create(user=user, title="Sum of the first n odd numbers", model=model)
    asked = Message.objects.create(
        conversation=conversation, role="user", model=model, text="Why is the sum of the first n odd numbers a square?"
    )
    Message.objects.create(
        parent=asked,
        conversation=conversation,
        role="assistant",
        model=model,
        text=MATH_ANSWER,
        reasoning="Try small cases, then induct on n.",
        thinking_ms=9_400,
        prompt_tokens=24,
        completion_tokens=612,
        reasoning_tokens=384,
    )
    return conversation


def test_math_and_share_page(live_url, browser, make_user, catalog):
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    conversation = math_chat(user, catalog["o1-preview"])
    with browsing(browser) as page:
        log_in(page, live_url, "ada")
        page.goto(f"{live_url}/c/{conversation.id}/")
        expect(last_answer(page).locator(".katex-display")).to_have_count(2)
        page.evaluate("document.fonts.ready")
        shoot(page, "math.png")
        page.get_by_role("button", name="Chat options").click()
        page.get_by_role("menuitem", name="Share…").click()
        expect(page.get_by_role("dialog", name="Share chat")).to_be_visible()
        url = page.get_by_label("Share link").input_value()
        shoot(page, "share-dialog.png")

    with browsing(browser) as page:  # a visitor with the link, not logged in
        page.goto(url)
        expect(page.locator(".md .katex-display")).to_have_count(2)
        page.evaluate("document.fonts.ready")
        shoot(page, "share-page.png")


def test_branches(live_url, browser, make_user, catalog):
    """An earlier question edited (its ‹2/2›) and the answer to it regenerated (‹2/2› too)."""
    user = make_user("ada")
    earlier_chats(user, catalog["o1-mini"])
    with browsing(browser) as page:
        log_in(page, live_url, "ada")
        send(page, "What is a list comprehension in Python?")
        expect(page.locator("article.msg-assistant .msg-foot:visible")).to_have_count(1, timeout=30_000)
        send(page, "Show a dict comprehension too.")
        expect(page.locator("article.msg-assistant .msg-foot:visible")).to_have_count(2, timeout=30_000)
        asked = page.locator("article.msg-user").nth(1)
        asked.hover()
        asked.get_by_role("button", name="Edit message").click()
        page.get_by_label("Edit your message").fill("Show a set comprehension instead.")
        page.get_by_role("button", name="Save & resend").click()
        expect(last_answer(page).locator(".msg-foot")).to_be_visible(timeout=30_000)
        last_answer(page).get_by_role("button", name="Regenerate answer").click()
        expect(last_answer(page).get_by_role("group", name="Version 2 of 2")).to_be_visible()
        expect(last_answer(page).locator(".msg-foot")).to_be_visible(timeout=30_000)
        expect(page.locator("article.msg-user").nth(1).get_by_role("group", name="Version 2 of 2")).to_be_visible()
        shoot(page, "branches.png")
