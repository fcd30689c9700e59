"""Models on OpenAI's Responses API: the catalog flags, and every way an answer ends on that path.

Replies are generated in this process against the simulator's /v1/responses over
real HTTP through the real openai SDK, as tests/test_answer_endings.py does for
Chat Completions.
"""

import json
import typing

import httpx2
import pytest
from django.forms.models import model_to_dict

from catalog.admin import AIModelForm
from catalog.models import AIModel
from chat import actions
from chat.models import Message
from generation import alerts
from generation.reply import NOTES
from quotas.models import Plan, PlanLimit
from simulator.app import SUMMARIES, tokenize
from tests.helpers import Generating, generate, quota_state, requested, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_queue")]


def o4_mini_fields(**changes) -> dict:
    fields = dict(
        slug="o4-mini",
        name="o4-mini",
        provider_model="o4-mini",
        api="responses",
        context_window=200_000,
        max_output_tokens=100_000,
        supports_streaming=True,
        uses_max_completion_tokens=True,
        is_reasoning=True,
        reasoning_efforts="low,medium,high",
        reasoning_summaries=True,
        store=False,
        tokenizer="o200k_base",
        enabled=True,
        display_order=40,
    )
    return {**fields, **changes}


def form_errors(**changes) -> dict:
    form = AIModelForm(data=o4_mini_fields(**{"slug": "o-next", **changes}))
    form.is_valid()
    return form.errors


def test_the_admin_accepts_a_reasoning_model_on_the_responses_api_with_summaries():
    assert form_errors() == {}


@pytest.mark.parametrize("flag", ["reasoning_summaries", "store"])
def test_the_admin_refuses_responses_only_flags_on_a_chat_completions_model(flag):
    errors = form_errors(api="chat_completions", **{"reasoning_summaries": False, "store": False, flag: True})
    assert "Only the Responses API" in errors[flag][0]


def test_the_admin_refuses_summaries_from_a_model_that_does_not_reason():
    assert "Only reasoning models" in form_errors(is_reasoning=False)["reasoning_summaries"][0]


def test_the_admin_refuses_an_unstreamed_responses_model():
    assert "always streamed" in form_errors(supports_streaming=False)["supports_streaming"][0]


def test_the_o1_defaults_stay_on_chat_completions_without_summaries_or_storage(catalog):
    for slug in ("o1-preview", "o1-mini"):
        model = model_to_dict(catalog[slug])
        assert (model["api"], model["reasoning_summaries"], model["store"]) == ("chat_completions", False, False)


@pytest.mark.django_db(transaction=False)
def test_current_reasoning_models_are_in_the_catalog_disabled_on_the_responses_api():
    for slug in ("o3", "o4-mini"):
        model = AIModel.objects.get(slug=slug)
        assert (model.api, model.enabled, model.reasoning_summaries, model.store) == ("responses", False, True, False)
        assert (model.context_window, model.max_output_tokens, model.efforts) == (200_000, 100_000, ["low", "medium", "high"])


def test_the_database_refuses_summaries_on_chat_completions_even_without_the_form(catalog):
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        AIModel.objects.filter(slug="o1-mini").update(reasoning_summaries=True)


# --- Through the Responses API, over real HTTP ----------------------------------------


@pytest.fixture(autouse=True)
def quick_retries(settings):
    settings.PROVIDER_RETRY_BASE_SECONDS = 0.05


@pytest.fixture(autouse=True)
def no_alert_left_behind():
    yield
    alerts.provider_alert_clear()


@pytest.fixture
def o4_mini(catalog) -> AIModel:
    """A reasoning model on the Responses API with summaries, in the default plan."""
    model, _ = AIModel.objects.update_or_create(slug="o4-mini", defaults=o4_mini_fields())  # the migration's, enabled
    PlanLimit.objects.create(plan=Plan.objects.get(is_default=True), model=model, messages=10, window_kind="anchored")
    return model


def send(user, text: str, conversation_id: int | None = None) -> Message:
    return actions.message_send(user=user, conversation_id=conversation_id, model_slug="o4-mini", text=text)[1]


def test_a_responses_model_streams_its_answer_and_reasoning_summary_and_settles_with_reasoning_tokens(simulator, o4_mini, make_user):
    reply = generate(send(make_user(), "Explain [sim:reasoning] [sim:think=0.3]"))

    assert (reply.status, reply.finish_reason, reply.incomplete) == ("done", "stop", False)
    assert reply.text.startswith("You said: Explain")
    assert reply.reasoning.startswith("**Breaking the question down**")
    assert "\n\n**Checking the details**" in reply.reasoning, "summary parts are paragraphs"
    assert reply.reasoning_tokens == 192 and reply.completion_tokens > 192 and reply.prompt_tokens > 0
    assert reply.thinking_ms >= 250
    assert quota_state(reply) == "settled"
    [request] = simulator.requests()
    assert request["reasoning"] == {"summary": "auto", "effort": "medium"}
    assert request["max_output_tokens"] == 100_000 and request["stream"] is True


def test_without_summaries_the_request_asks_only_for_the_effort(simulator, o4_mini, make_user):
    AIModel.objects.filter(id=o4_mini.id).update(reasoning_summaries=False)
    reply = generate(send(make_user(), "Explain [sim:reasoning] [sim:think=0]"))

    assert reply.status == "done" and reply.reasoning == ""
    assert simulator.requests()[0]["reasoning"] == {"effort": "medium"}


def test_stop_while_a_responses_model_thinks_closes_the_request_and_refunds(simulator, o4_mini, make_user):
    user = make_user()
    running = Generating(send(user, "Long think [sim:think=120]"))
    requested(simulator)

    actions.reply_stop(user=user, message_id=running.reply.id)
    reply = running.ended()

    assert reply.status == "stopped" and reply.text == ""
    assert quota_state(reply) == "refunded"
    assert simulator.requests()[0]["_sim"]["closed_by_client_at"], "the provider saw the connection close"


def test_stop_while_only_a_summary_streamed_is_refunded(simulator, o4_mini, make_user):
    user = make_user()
    running = Generating(send(user, "Think aloud [sim:reasoning] [sim:think=40]"))
    wait_until(lambda: Message.objects.get(id=running.reply.id).reasoning, timeout=30, what="summary checkpointed")

    actions.reply_stop(user=user, message_id=running.reply.id)
    reply = running.ended()

    assert reply.status == "stopped" and reply.reasoning and reply.text == ""  # stopped wherever the summary was
    assert quota_state(reply) == "refunded", "a reasoning summary alone is not answer output"


def test_a_responses_stream_cut_before_any_text_is_retried(simulator, o4_mini, make_user):
    reply = generate(send(make_user(), "Cut [sim:fault=cut] [sim:after=0] [sim:fault_times=1] [sim:think=0]"))

    assert (reply.status, reply.incomplete, reply.finish_reason) == ("done", False, "stop")
    assert len(simulator.requests()) == 2
    assert quota_state(reply) == "settled"


def test_a_responses_stream_cut_after_visible_text_is_kept_incomplete(simulator, o4_mini, make_user):
    reply = generate(send(make_user(), "Cut [sim:fault=cut] [sim:after=5] [sim:think=0]"))

    assert (reply.status, reply.incomplete) == ("failed", True)
    assert reply.text and len(simulator.requests()) == 1
    assert quota_state(reply) == "settled"


def test_a_failed_response_is_retried_then_fails_and_refunds(simulator, o4_mini, make_user):
    reply = generate(send(make_user(), "Fail [sim:fault=failed] [sim:after=0] [sim:think=0]"))

    assert reply.status == "failed" and reply.text == ""
    assert reply.error == "The model provider had an error while answering."
    assert len(simulator.requests()) == 4
    assert quota_state(reply) == "refunded"


def test_max_output_tokens_with_visible_text_is_done_and_marked_cut_off(simulator, o4_mini, make_user):
    reply = generate(send(make_user(), "Long [sim:finish=length] [sim:think=0]"))

    assert (reply.status, reply.incomplete, reply.finish_reason) == ("done", True, "length")
    assert reply.text
    assert quota_state(reply) == "settled"


def test_max_output_tokens_spent_thinking_fails_and_refunds(simulator, o4_mini, make_user):
    reply = generate(send(make_user(), "Hard [sim:finish=length] [sim:tokens=0] [sim:reasoning] [sim:think=0.2]"))

    assert (reply.status, reply.text, reply.finish_reason) == ("failed", "", "length")
    assert reply.error == NOTES["length_empty"]
    assert reply.reasoning, "the summary is kept for the user to read"
    assert quota_state(reply) == "refunded"


def test_a_content_filter_with_visible_text_is_done_and_marked(simulator, o4_mini, make_user):
    reply = generate(send(make_user(), "Filtered [sim:finish=content_filter] [sim:think=0]"))

    assert (reply.status, reply.incomplete, reply.finish_reason) == ("done", True, "content_filter")


def test_a_later_turn_sends_earlier_user_messages_and_visible_answers_only_and_stores_nothing(simulator, o4_mini, make_user):
    user = make_user()
    first = generate(send(user, "First [sim:reasoning] [sim:think=0.2]"))
    assert first.reasoning and first.text
    second = generate(send(user, "Second [sim:think=0]", conversation_id=first.conversation_id))
    assert second.status == "done"

    later = simulator.requests()[-1]
    assert later["input"] == [
        {"role": "user", "content": "First [sim:reasoning] [sim:think=0.2]"},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": "Second [sim:think=0]"},
    ]
    assert later["store"] is False and "include" not in later and "previous_response_id" not in later
    sent = json.dumps({k: v for k, v in later.items() if k != "reasoning"})
    for leak in ("Breaking the question down", "summary_text", "encrypted_content", "rs_sim"):
        assert leak not in sent


def test_an_admin_may_let_the_provider_store_responses(simulator, o4_mini, make_user):
    AIModel.objects.filter(id=o4_mini.id).update(store=True)
    generate(send(make_user(), "Keep it [sim:think=0]"))

    assert simulator.requests()[0]["store"] is True


def sdk_event(event: dict):
    """The event validated against the openai SDK's own type for it (strictly, unlike the SDK itself)."""
    from openai.types.responses import ResponseStreamEvent

    members = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
    by_type = {typing.get_args(m.model_fields["type"].annotation)[0]: m for m in members}
    return by_type[event["type"]].model_validate(event)


def test_the_simulator_streams_responses_events_in_the_real_order_and_shapes(simulator):
    body = {
        "model": "o4-mini",
        "input": [{"role": "user", "content": "Hi [sim:reasoning] [sim:think=0] [sim:tokens=3]"}],
        "reasoning": {"summary": "auto"},
        "stream": True,
    }
    with httpx2.stream("POST", f"{simulator.url}/v1/responses", json=body, timeout=10) as response:
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    events = [sdk_event(json.loads(line)) for line in lines]

    summary = [
        kind
        for part in SUMMARIES
        for kind in [
            "response.reasoning_summary_part.added",
            *["response.reasoning_summary_text.delta"] * len(tokenize(part)),
            "response.reasoning_summary_text.done",
            "response.reasoning_summary_part.done",
        ]
    ]
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # the reasoning item
        *summary,
        "response.output_item.done",
        "response.output_item.added",  # the message
        "response.content_part.added",
        *["response.output_text.delta"] * 3,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.usage.output_tokens_details.reasoning_tokens == 64
    assert completed.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
