"""Model controls: reasoning effort per message, custom instructions, the model a new chat starts on.

What reaches the model is read from the simulator's record of the request bodies
it received over real HTTP through the real openai SDK.
"""

import pytest

from accounts.models import Profile
from catalog.context import ContextTooLarge, context_trim, instructions_tokens
from catalog.models import AIModel
from chat import actions
from chat.models import Conversation
from chat.selectors import model_for_new_chat
from quotas.models import Plan, PlanLimit
from quotas.selectors import quota_json
from tests.helpers import generate, quota_state

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("private_queue")]


def reasoner_fields(**changes) -> dict:
    """A reasoning model on Chat Completions that takes an effort and a system message (like o3-mini)."""
    fields = dict(
        slug="o3-mini",
        name="o3-mini",
        provider_model="o3-mini",
        api="chat_completions",
        context_window=200_000,
        max_output_tokens=100_000,
        supports_system_message=True,
        tokenizer="o200k_base",
        is_reasoning=True,
        reasoning_efforts="low,medium,high",
        enabled=True,
        display_order=40,
    )
    return {**fields, **changes}


@pytest.fixture
def o3_mini(catalog) -> AIModel:
    model = AIModel.objects.create(**reasoner_fields())
    PlanLimit.objects.create(plan=Plan.objects.get(is_default=True), model=model, messages=10, window_kind="anchored")
    return model


@pytest.fixture
def o4_mini(catalog) -> AIModel:
    """The migration's o4-mini on the Responses API, enabled and in the default plan."""
    model = AIModel.objects.get(slug="o4-mini") if AIModel.objects.filter(slug="o4-mini").exists() else None
    fields = reasoner_fields(slug="o4-mini", name="o4-mini", provider_model="o4-mini", api="responses", reasoning_summaries=True)
    if model is None:
        model = AIModel.objects.create(**fields)
    else:
        AIModel.objects.filter(id=model.id).update(**fields)
    PlanLimit.objects.create(plan=Plan.objects.get(is_default=True), model=model, messages=10, window_kind="anchored")
    return AIModel.objects.get(id=model.id)


def send(user, model: str, text: str = "hello", conversation_id: int | None = None, effort=None):
    return actions.message_send(user=user, conversation_id=conversation_id, model_slug=model, text=text, effort=effort)[1]


def set_instructions(user, text: str) -> None:
    Profile.objects.filter(user=user).update(instructions=text)


# --- Reasoning effort ----------------------------------------------------------------


def test_the_effort_picked_for_a_message_is_sent_as_reasoning_effort_and_stored_on_the_reply(simulator, o3_mini, make_user):
    reply = generate(send(make_user(), "o3-mini", "Think hard [sim:think=0]", effort="high"))

    assert reply.status == "done" and reply.reasoning_effort == "high"
    [request] = simulator.requests()
    assert request["reasoning_effort"] == "high"


def test_a_model_without_efforts_gets_no_reasoning_effort(simulator, catalog, make_user):
    reply = generate(send(make_user(), "o1-mini", "Hi [sim:think=0]"))

    assert reply.status == "done" and reply.reasoning_effort == ""
    assert "reasoning_effort" not in simulator.requests()[0]


def test_an_effort_for_a_model_that_takes_none_is_refused_and_nothing_is_stored(catalog, make_user):
    user = make_user()
    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "o1-mini", effort="high")

    assert refused.value.code == "invalid" and "takes no reasoning effort" in str(refused.value)
    assert not Conversation.objects.filter(user=user).exists()


def test_the_conversation_remembers_the_effort_for_its_next_message(simulator, o3_mini, make_user):
    user = make_user()
    first = generate(send(user, "o3-mini", "One [sim:think=0]", effort="low"))
    second = generate(send(user, "o3-mini", "Two [sim:think=0]", conversation_id=first.conversation_id))

    assert Conversation.objects.get(id=first.conversation_id).reasoning_effort == "low"
    assert second.reasoning_effort == "low"
    assert [r["reasoning_effort"] for r in simulator.requests()] == ["low", "low"]


def test_an_effort_the_plan_does_not_allow_is_refused_with_what_it_allows_and_costs_nothing(simulator, o3_mini, make_user):
    Plan.objects.filter(is_default=True).update(reasoning_efforts="low,medium")
    user = make_user()
    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "o3-mini", effort="high")

    assert refused.value.code == "effort_not_allowed"
    assert str(refused.value) == "High reasoning effort is not on your plan for o3-mini. Your plan allows low, medium."
    assert not Conversation.objects.filter(user=user).exists()
    assert simulator.requests() == []
    picker = {q["model"]: q for q in quota_json(user)}
    assert picker["o3-mini"]["efforts"] == ["low", "medium"] and picker["o1-mini"]["efforts"] == []


def test_a_plan_that_allows_no_effort_refuses_models_that_take_one(o3_mini, make_user):
    Plan.objects.filter(is_default=True).update(reasoning_efforts="")
    with pytest.raises(actions.ActionRefused) as refused:
        send(make_user(), "o3-mini")

    assert refused.value.code == "effort_not_allowed"


def test_without_a_pick_the_default_effort_is_the_plans_nearest_to_medium(simulator, o3_mini, make_user):
    Plan.objects.filter(is_default=True).update(reasoning_efforts="low")
    reply = generate(send(make_user(), "o3-mini", "Hi [sim:think=0]"))

    assert simulator.requests()[0]["reasoning_effort"] == "low" and reply.reasoning_effort == "low"


def test_the_effort_per_message_reaches_the_responses_request(simulator, o4_mini, make_user):
    reply = generate(send(make_user(), "o4-mini", "Explain [sim:reasoning] [sim:think=0]", effort="low"))

    assert reply.status == "done" and reply.reasoning_effort == "low"
    assert simulator.requests()[0]["reasoning"] == {"summary": "auto", "effort": "low"}


# --- Custom instructions -------------------------------------------------------------


def test_instructions_go_as_a_system_message_where_the_model_takes_one(simulator, o3_mini, make_user):
    user = make_user()
    set_instructions(user, "Answer in French.")
    first = generate(send(user, "o3-mini", "Hello [sim:think=0]"))
    actions.conversation_instructions_set(user=user, conversation_id=first.conversation_id, instructions="Be brief.")
    generate(send(user, "o3-mini", "Again [sim:think=0]", conversation_id=first.conversation_id))

    one, two = simulator.requests()
    assert one["messages"] == [{"role": "system", "content": "Answer in French."}, {"role": "user", "content": "Hello [sim:think=0]"}]
    assert two["messages"][0] == {"role": "system", "content": "Answer in French.\n\nBe brief."}
    assert [m["role"] for m in two["messages"]] == ["system", "user", "assistant", "user"]


def test_instructions_are_folded_into_the_first_user_turn_with_a_label_for_o1(simulator, catalog, make_user):
    user = make_user()
    set_instructions(user, "Answer in French.")
    first = generate(send(user, "o1-mini", "Hello [sim:think=0]"))
    generate(send(user, "o1-mini", "Again [sim:think=0]", conversation_id=first.conversation_id))

    for request in simulator.requests():
        assert all(m["role"] != "system" for m in request["messages"])
        head = request["messages"][0]
        assert head["role"] == "user"
        assert head["content"].startswith("[Custom instructions — follow them throughout this conversation]\nAnswer in French.\n")
        assert head["content"].endswith("[End of custom instructions]\n\nHello [sim:think=0]")
    assert simulator.requests()[1]["messages"][-1] == {"role": "user", "content": "Again [sim:think=0]"}


def test_the_o1_picker_says_it_takes_no_system_message(o3_mini, make_user):
    picker = {q["model"]: q for q in quota_json(make_user())}
    assert (picker["o1-mini"]["system_message"], picker["o3-mini"]["system_message"]) == (False, True)


def test_on_the_responses_api_instructions_are_the_instructions_field(simulator, o4_mini, make_user):
    user = make_user()
    set_instructions(user, "Answer in French.")
    generate(send(user, "o4-mini", "Hello [sim:think=0]", effort="medium"))

    [request] = simulator.requests()
    assert request["instructions"] == "Answer in French."
    assert request["input"] == [{"role": "user", "content": "Hello [sim:think=0]"}]


def test_no_instructions_no_system_message(simulator, o3_mini, make_user):
    generate(send(make_user(), "o3-mini", "Hello [sim:think=0]"))
    assert [m["role"] for m in simulator.requests()[0]["messages"]] == ["user"]


def test_instructions_count_in_trimming_older_turns_go_first():
    turns = [{"role": "user", "content": "word " * 40}, {"role": "assistant", "content": "word " * 40}, {"role": "user", "content": "hi"}]
    instructions = "rule " * 30
    window = dict(context_window=140, max_output_tokens=10, tokenizer="o200k_base")

    assert context_trim(turns, **window) == turns
    assert context_trim(turns, **window, instructions=instructions) == turns[-1:]
    assert instructions_tokens(instructions, "o200k_base") > 30
    with pytest.raises(ContextTooLarge):
        context_trim(turns, **window, instructions="rule " * 200)


def test_instructions_too_long_for_the_window_refuse_the_send_before_any_quota_is_spent(o3_mini, make_user):
    user = make_user()
    AIModel.objects.filter(id=o3_mini.id).update(context_window=300, max_output_tokens=100)
    set_instructions(user, "rule " * 400)
    with pytest.raises(actions.ActionRefused) as refused:
        send(user, "o3-mini")

    assert refused.value.code == "too_long" and "custom instructions" in str(refused.value)
    assert not Conversation.objects.filter(user=user).exists()


def test_chat_instructions_are_refused_on_another_users_chat_and_when_too_long(simulator, catalog, make_user):
    from django.http import Http404

    owner, other = make_user(), make_user()
    reply = generate(send(owner, "o1-mini", "Hi [sim:think=0]"))
    with pytest.raises(Http404):
        actions.conversation_instructions_set(user=other, conversation_id=reply.conversation_id, instructions="x")
    with pytest.raises(actions.ActionRefused):
        actions.conversation_instructions_set(user=owner, conversation_id=reply.conversation_id, instructions="x" * 4001)
    assert Conversation.objects.get(id=reply.conversation_id).instructions == ""


def test_the_profile_page_saves_custom_instructions(client, make_user):
    user = make_user()
    client.force_login(user)
    response = client.post("/accounts/profile/", {"time_zone": "Europe/Paris", "email": "", "instructions": "  Be brief.  "})

    assert response.status_code == 302
    assert Profile.objects.get(user=user).instructions == "Be brief."


# --- The model a new chat starts on ---------------------------------------------------


def test_a_new_chat_starts_on_the_model_used_last(simulator, catalog, make_user):
    user = make_user()
    generate(send(user, "o1-preview", "Hi [sim:think=0]"))

    assert model_for_new_chat(user=user, quota=quota_json(user)) == "o1-preview"


def test_a_refused_send_leaves_the_model_used_last_as_it_was(catalog, make_user, private_queue):
    user = make_user()
    actions.message_send(user=user, conversation_id=None, model_slug="o1-mini", text="hi")
    PlanLimit.objects.filter(model__slug="o1-preview").update(disabled=True)
    with pytest.raises(actions.ActionRefused):
        actions.message_send(user=user, conversation_id=None, model_slug="o1-preview", text="hi")
    assert model_for_new_chat(user=user, quota=quota_json(user)) == "o1-mini"


def test_a_picked_model_is_remembered_without_a_send(catalog, make_user):
    user = make_user()
    actions.model_pick(user=user, model_slug="gpt-4o")
    assert model_for_new_chat(user=user, quota=quota_json(user)) == "gpt-4o"
    with pytest.raises(actions.ActionRefused):
        actions.model_pick(user=user, model_slug="no-such-model")


def test_a_new_chat_never_starts_on_a_model_at_its_limit(simulator, catalog, make_user):
    user = make_user()
    PlanLimit.objects.filter(model__slug="o1-preview").update(messages=1)
    reply = generate(send(user, "o1-preview", "Hi [sim:think=0]"))
    assert quota_state(reply) == "settled"

    start = model_for_new_chat(user=user, quota=quota_json(user))
    assert start != "o1-preview"
    assert start in {q["model"] for q in quota_json(user) if not q["exhausted"]}


# --- The admin ---------------------------------------------------------------------------


def test_the_model_admin_refuses_unknown_efforts_and_efforts_on_a_model_that_does_not_reason(catalog):
    from catalog.admin import AIModelForm

    def errors(**changes) -> dict:
        form = AIModelForm(data=reasoner_fields(slug="o-next", **changes))
        form.is_valid()
        return form.errors

    assert errors() == {}
    assert "Effort levels are low, medium, high" in errors(reasoning_efforts="low,extreme")["reasoning_efforts"][0]
    assert "Only reasoning models" in errors(is_reasoning=False)["reasoning_efforts"][0]


def test_the_plan_admin_refuses_unknown_efforts_and_keeps_known_ones_in_order(catalog):
    from quotas.admin import PlanForm

    def form(efforts: str) -> PlanForm:
        form = PlanForm(data={"name": "Team", "description": "", "calendar_time_zone": "UTC", "reasoning_efforts": efforts})
        form.is_valid()
        return form

    assert "not extreme" in form("low, extreme").errors["reasoning_efforts"][0]
    assert form("high, low").cleaned_data["reasoning_efforts"] == "low,high"


# --- Over the WebSocket, and regenerate / edit -------------------------------------------


def test_a_send_frame_with_an_effort_the_plan_refuses_gets_an_error_frame_and_stores_nothing(o3_mini, make_user):
    from asgiref.sync import async_to_sync

    from tests.helpers import handshake, session_cookie

    Plan.objects.filter(is_default=True).update(reasoning_efforts="low")
    user = make_user()
    cookie = session_cookie(user)  # outside the event loop's thread

    @async_to_sync
    async def run():
        _, communicator = await handshake(cookie)
        frame = {"type": "send", "conversation_id": None, "model": "o3-mini", "effort": "high", "text": "hi", "client_id": "c1"}
        await communicator.send_json_to(frame)
        answer = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return answer

    answer = run()
    assert (answer["type"], answer["code"], answer["client_id"]) == ("error", "effort_not_allowed", "c1")
    assert answer["message"] == "High reasoning effort is not on your plan for o3-mini. Your plan allows low."
    assert not Conversation.objects.filter(user=user).exists()


def test_regenerate_and_edit_take_a_new_effort_and_the_chat_remembers_it(simulator, o3_mini, make_user):
    user = make_user()
    first = generate(send(user, "o3-mini", "One [sim:think=0]", effort="low"))
    again = generate(actions.reply_regenerate(user=user, message_id=first.id, effort="high"))
    question = again.conversation.messages.filter(role="user").last()
    _, edited = actions.message_edit(user=user, message_id=question.id, text="One, edited [sim:think=0]")
    edited = generate(edited)

    assert [r["reasoning_effort"] for r in simulator.requests()] == ["low", "high", "high"]
    assert (again.reasoning_effort, edited.reasoning_effort) == ("high", "high")
