"""Model controls in Chromium: the reasoning effort, the instructions note and dialog, the
model a new chat starts on, and a Responses-API model's reasoning summary streaming into
the Thought panel. Against the live stack (ASGI server, Celery worker, simulator)."""

import re

from playwright.sync_api import expect

from accounts.models import Profile
from catalog.models import AIModel
from chat.models import Conversation, Message
from quotas.models import Plan, PlanLimit
from tests.helpers import last_answer, log_in, wait_until
from tests.helpers import type_and_send as send


def enable(slug: str, **fields) -> AIModel:
    """A model that takes an effort, enabled and in the default plan (o3 and o4-mini ship disabled)."""
    defaults = dict(
        name=slug,
        provider_model=slug,
        context_window=200_000,
        max_output_tokens=100_000,
        supports_system_message=True,
        tokenizer="o200k_base",
        is_reasoning=True,
        reasoning_efforts="low,medium,high",
        enabled=True,
        display_order=5,
    )
    model, _ = AIModel.objects.update_or_create(slug=slug, defaults={**defaults, **fields})
    PlanLimit.objects.update_or_create(plan=Plan.objects.get(is_default=True), model=model, defaults={"messages": 20})
    return model


def pick(page, name: str) -> None:
    page.locator("#model-button").click()
    page.get_by_role("option", name=re.compile(rf"^{re.escape(name)}\b")).click()
    expect(page.locator("#model-button-name")).to_have_text(name)


def test_the_effort_control_shows_only_for_models_that_take_one_and_the_choice_is_sent_shown_and_remembered(
    live_url, browser_page, make_user, simulator_server
):
    enable("o3-mini", api="chat_completions")
    make_user("effortful")
    page = browser_page
    log_in(page, live_url, "effortful")
    effort = page.get_by_label("Reasoning effort")

    pick(page, "o1-mini")
    expect(effort).to_be_hidden()
    pick(page, "o3-mini")
    expect(effort).to_be_visible()
    expect(effort).to_have_value("medium")
    effort.select_option(label="High effort")
    simulator_server.clear()
    send(page, "Think hard [sim:think=0]")

    expect(last_answer(page).locator(".msg-meta")).to_contain_text("o3-mini · High effort")
    [request] = simulator_server.requests()
    assert request["reasoning_effort"] == "high"
    reply = Message.objects.get(role="assistant", conversation__user__username="effortful")
    assert reply.reasoning_effort == "high"

    # The chat remembers its effort; a new chat starts on the model picked last.
    page.reload()
    expect(page.get_by_label("Reasoning effort")).to_have_value("high")
    expect(last_answer(page).locator(".msg-meta")).to_contain_text("High effort")
    page.goto(f"{live_url}/")
    expect(page.locator("#model-button-name")).to_have_text("o3-mini")


def test_a_plan_limited_to_low_effort_offers_only_low(live_url, browser_page, make_user):
    enable("o3-mini", api="chat_completions")
    Plan.objects.filter(is_default=True).update(reasoning_efforts="low")
    make_user("frugal")
    page = browser_page
    log_in(page, live_url, "frugal")

    pick(page, "o3-mini")

    options = page.get_by_label("Reasoning effort").locator("option")
    expect(options).to_have_count(1)
    expect(options).to_have_text(["Low effort"])


def test_a_new_chat_starts_on_the_remembered_model_unless_it_is_at_its_limit(live_url, browser_page, make_user, catalog):
    user = make_user("faithful")
    Profile.objects.filter(user=user).update(last_model=catalog["o1-mini"])
    page = browser_page
    log_in(page, live_url, "faithful")
    expect(page.locator("#model-button-name")).to_have_text("o1-mini")

    pick(page, "GPT-4o")
    wait_until(lambda: Profile.objects.get(user=user).last_model_id == catalog["gpt-4o"].id, what="the pick remembered")
    PlanLimit.objects.filter(model=catalog["gpt-4o"]).update(messages=0)
    page.reload()

    expect(page.locator("#model-button-name")).not_to_have_text("GPT-4o")
    expect(page.locator("#model-button")).not_to_have_class(re.compile("is-exhausted"))


def test_an_o1_user_with_instructions_is_told_where_they_go_and_a_chat_takes_its_own(live_url, browser_page, make_user):
    user = make_user("instructive")
    Profile.objects.filter(user=user).update(instructions="Answer in French.")
    page = browser_page
    log_in(page, live_url, "instructive")
    note = page.locator("#instructions-note")

    pick(page, "o1-mini")
    expect(note).to_be_visible()
    expect(note).to_have_text(
        "o1-mini takes no system message: your custom instructions are sent at the start of the conversation, marked as instructions."
    )
    pick(page, "GPT-4o")
    expect(note).to_be_hidden()

    send(page, "Bonjour [sim:think=0]")
    expect(last_answer(page).locator(".msg-foot")).to_be_visible()
    page.get_by_role("button", name="Instructions").click()
    page.get_by_role("textbox", name="Instructions for this chat").fill("Be brief.")
    page.get_by_role("button", name="Save").click()

    conversation = Conversation.objects.get(user=user)
    wait_until(lambda: Conversation.objects.get(id=conversation.id).instructions == "Be brief.", what="the chat's instructions saved")
    page.reload()
    page.get_by_role("button", name="Instructions").click()
    expect(page.get_by_role("textbox", name="Instructions for this chat")).to_have_value("Be brief.")


def test_a_reasoning_summary_streams_into_the_thought_panel_on_a_responses_model(live_url, browser_page, make_user, simulator_server):
    enable("o4-mini", api="responses", reasoning_summaries=True)
    make_user("summarised")
    page = browser_page
    log_in(page, live_url, "summarised")
    pick(page, "o4-mini")
    page.get_by_label("Reasoning effort").select_option("low")
    simulator_server.clear()

    send(page, "Explain this [sim:reasoning] [sim:think=6]")

    answer = last_answer(page)
    label = answer.locator("details.reasoning summary")
    expect(label).to_have_text(re.compile(r"^Thinking… \d+s$"))
    label.click()
    summary = answer.locator(".reasoning-text")
    expect(summary).to_contain_text("Breaking the question down", timeout=15_000)  # the worker may be busy
    # Streamed: the first summary is on screen while the model is still thinking.
    assert re.match(r"^Thinking… \d+s$", label.inner_text()), label.inner_text()
    expect(label).to_have_text(re.compile(r"^Thought for \d+ seconds?$"), timeout=20_000)
    expect(summary).to_contain_text("Checking the details")
    # Summaries are markdown, rendered (and sanitised) like answers: their headings are bold, not asterisks.
    expect(summary.locator("strong").first).to_have_text("Breaking the question down")
    expect(summary).not_to_contain_text("**")
    expect(answer.locator(".md")).to_contain_text("You said: Explain this")
    expect(answer.locator(".msg-meta")).to_contain_text("o4-mini · Low effort")
    [request] = simulator_server.requests()
    assert request["reasoning"] == {"summary": "auto", "effort": "low"}
