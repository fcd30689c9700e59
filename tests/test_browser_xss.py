"""Hostile HTML in answers and in what people type never runs and never reaches the DOM
as markup, while it streams in small pieces and after a reload (Debian's Chromium
against the live stack). The CSP would block inline script on its own; these tests
check the sanitising too, by watching the DOM for anything executable."""

import base64
import re

from playwright.sync_api import Page, expect

from tests.helpers import last_answer, log_in
from tests.helpers import type_and_send as send

PAYLOADS = {
    "script tag": "<script>window.__pwned=1</script>",
    "img onerror": '<img src=x onerror="window.__pwned=2">',
    "javascript: link": "[click](javascript:window.__pwned=3)",
    "svg script": "<svg><script>window.__pwned=4</script></svg>",
    "svg onload": '<svg onload="window.__pwned=5">',
    "iframe srcdoc": '<iframe srcdoc="<script>parent.__pwned=6</script>"></iframe>',
    "raw javascript: anchor": '<a href="javascript:window.__pwned=7">raw</a>',
    "details ontoggle": '<details open ontoggle="window.__pwned=8">toggle</details>',
    "obfuscated link": "[click](jav&#x09;ascript:window.__pwned=9)",
}

# Installed before any page script: records anything executable that appears inside the
# app (#app: sidebar and messages), at every mutation, so half-streamed markup counts too.
WATCH_DOM = """
(() => {
  const BAD_TAGS = new Set(["SCRIPT", "IFRAME", "FRAME", "OBJECT", "EMBED", "BASE"]);
  const URL_ATTRS = new Set(["href", "src", "xlink:href", "action", "formaction", "data", "poster", "background"]);
  const badUrl = (v) => /^(javascript|vbscript|data):/i.test(v.replace(/[\\u0000-\\u0020]/g, ""));
  window.__xssScan = (root) => {
    const found = [];
    if (!root || root.nodeType !== 1) return found;
    for (const node of [root, ...root.querySelectorAll("*")]) {
      if (BAD_TAGS.has(node.tagName.toUpperCase())) found.push("<" + node.tagName.toLowerCase() + ">");
      for (const a of node.attributes) {
        const name = a.name.toLowerCase();
        if (name.startsWith("on") || name === "srcdoc" || (URL_ATTRS.has(name) && badUrl(a.value))) {
          found.push(`${node.tagName.toLowerCase()} ${a.name}="${a.value}"`);
        }
      }
    }
    return found;
  };
  window.__xss = [];
  new MutationObserver((records) => {
    for (const r of records) {
      const target = r.target.nodeType === 1 ? r.target : r.target.parentElement;
      if (!target || !target.closest("#app")) continue;
      const nodes = r.type === "attributes" ? [target] : [...r.addedNodes];
      for (const node of nodes) window.__xss.push(...window.__xssScan(node));
    }
  }).observe(document, { subtree: true, childList: true, attributes: true });
})();
"""


def directives(answer: str) -> str:
    """The simulator answers exactly `answer`, a few characters per frame."""
    return f"[sim:think=0] [sim:rate=30] [sim:reply_b64={base64.b64encode(answer.encode()).decode()}]"


def watched_page(page: Page) -> Page:
    page.add_init_script(WATCH_DOM)
    return page


def assert_nothing_ran(page: Page) -> None:
    assert page.evaluate("typeof window.__pwned") == "undefined", page.evaluate("window.__pwned")
    assert page.evaluate("window.__xss") == [], "executable markup appeared in the page while it changed"


def executable_in(locator) -> list[str]:
    return locator.evaluate("(node) => window.__xssScan(node)")


def test_hostile_html_in_streamed_answers_is_inert_during_streaming_and_after_a_reload(live_url, browser_page, make_user):
    make_user("mallory")
    page = watched_page(browser_page)
    log_in(page, live_url, "mallory")
    sample = """<a href=" javascript:x" onclick="y">a</a><iframe></iframe>"""
    assert (
        len(page.evaluate("(html) => { const d = document.createElement('div'); d.innerHTML = html; return window.__xssScan(d); }", sample))
        == 3
    )  # the watcher sees what it should

    for n, (name, payload) in enumerate(PAYLOADS.items(), start=1):
        reply = f"Payload {n}:\n\n{payload}\n\nEnd {n}."
        send(page, f"Answer {n} {directives(reply)}")
        answer = last_answer(page)
        expect(answer.locator(".msg-foot")).to_be_visible()
        expect(page.locator("article.msg-assistant")).to_have_count(n)
        expect(answer).to_contain_text(f"End {n}.")
        assert executable_in(answer) == [], name
        html = answer.inner_html()
        for needle in ("<script", "onerror", "onload", "ontoggle", "javascript:", "<iframe", "srcdoc"):
            assert needle not in html.lower(), f"{name}: {needle} in {html}"
        links = answer.locator(".md a", has_text=re.compile("click|raw"))
        if links.count():
            links.first.click()
        assert_nothing_ran(page)
        assert len(page.context.pages) == 1, f"{name}: the link opened a page"

    page.reload()

    expect(page.locator("article.msg-assistant")).to_have_count(len(PAYLOADS))
    for n, name in enumerate(PAYLOADS, start=1):
        answer = page.locator("article.msg-assistant").nth(n - 1)
        expect(answer).to_contain_text(f"End {n}.")
        assert executable_in(answer) == [], name
    assert_nothing_ran(page)


def test_hostile_html_typed_by_a_person_is_shown_as_text(live_url, browser_page, make_user):
    make_user("typed")
    page = watched_page(browser_page)
    log_in(page, live_url, "typed")
    text = "\n".join(PAYLOADS.values()) + "\n[sim:think=0] [sim:rate=0]"

    send(page, text)

    bubble = page.locator("article.msg-user .bubble")
    expect(bubble).to_have_count(1)
    assert bubble.text_content() == text
    assert bubble.evaluate("(node) => node.children.length") == 0
    # The title is the first line, as text, in the sidebar and the window title.
    first = PAYLOADS["script tag"]
    expect(page.locator(".history-title").first).to_have_text(re.compile("^" + re.escape(first)))
    assert page.locator(".history-title").first.evaluate("(node) => node.children.length") == 0
    expect(page).to_have_title(re.compile("^" + re.escape(first)))
    # The simulator echoes the text back, through the markdown renderer.
    expect(last_answer(page).locator(".msg-foot")).to_be_visible()
    expect(last_answer(page).locator(".md")).to_contain_text("You said:")
    assert executable_in(page.get_by_role("region", name="Messages")) == []
    assert executable_in(page.locator("#sidebar")) == []
    assert_nothing_ran(page)

    page.reload()

    expect(last_answer(page).locator(".msg-foot")).to_be_visible()
    assert page.locator("article.msg-user .bubble").text_content() == text
    assert executable_in(page.get_by_role("region", name="Messages")) == []
    assert_nothing_ran(page)


def test_pages_forbid_inline_script_in_their_content_security_policy(live_url, browser_page, make_user):
    make_user("policy")
    page = browser_page
    response = page.goto(f"{live_url}/accounts/login/")
    checked = [response]
    log_in(page, live_url, "policy")
    send(page, "Hello [sim:think=0]")
    expect(page).to_have_url(re.compile(r"/c/\d+/$"))
    checked.append(page.reload())
    checked.append(page.goto(f"{live_url}/"))
    for response in checked:
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy, (response.url, policy)
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, (response.url, policy)
        assert "object-src 'none'" in policy, (response.url, policy)
