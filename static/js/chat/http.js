/* Calls to the page's JSON API with the session cookie and Django's CSRF token. */

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

/** POST `fields` (an object, or FormData for files) as a form; the JSON answer, or an Error carrying the server's message. */
export async function postForm(url, fields) {
  const body = fields instanceof FormData ? fields : new URLSearchParams(fields || {});
  return post(url, body);
}

/** POST one file as multipart form data, in the field `file`. */
export async function postFile(url, file) {
  const body = new FormData();
  body.append("file", file);
  return post(url, body);
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    body,
    credentials: "same-origin",
    headers: { "X-CSRFToken": csrfToken(), "X-Requested-With": "fetch" },
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    throw new Error((data && data.message) || `The server said ${response.status}.`);
  }
  return data;
}
