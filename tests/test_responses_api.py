"""Models on OpenAI's Responses API: the catalog flags, and every way an answer ends on that path.

Replies are generated in this process against the simulator's /v1/responses over
real HTTP through the real openai SDK, as tests/test_answer_endings.py does for
Chat Completions.
"""

import pytest
from django.forms.models import model_to_dict

from catalog.admin import AIModelForm
from catalog.models import AIModel

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
    form = AIModelForm(data=o4_mini_fields(**changes))
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


def test_the_database_refuses_summaries_on_chat_completions_even_without_the_form(catalog):
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        AIModel.objects.filter(slug="o1-mini").update(reasoning_summaries=True)
