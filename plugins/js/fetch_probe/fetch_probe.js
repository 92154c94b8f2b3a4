// A Stormhook action in JavaScript: one HTTP request with `fetch`, answered with the
// response's status and text.
//
// Parameters: {"url": "...", "method": "GET" | "POST", "body": <any JSON, or null>}.
// Result:     {"status": <int>, "body": <text>}.
//
// `run` is synchronous in WIT; componentize-js awaits the promise an export returns, running
// the event loop until it settles, so an `async` function is fine. Its bindings map a returned
// value to `ok` and a thrown plain object to `err`: throw `{ tag: "upstream", val: "message" }`
// for the WIT `error` variant. A thrown `Error` (a bug, a `TypeError`) is not mapped: the
// component traps. So `run` turns anything unexpected into `internal`.

/** The WIT `error` variant case `tag` with `message`. */
function failure(tag, message) {
  return { tag, val: String(message) };
}

const TAGS = new Set(["invalid-input", "denied", "upstream", "internal"]);

export async function run(parameters, context) {
  try {
    return await probe(parameters, context);
  } catch (e) {
    if (e !== null && typeof e === "object" && TAGS.has(e.tag)) {
      throw e;
    }
    throw failure("internal", e instanceof Error ? `${e.name}: ${e.message}` : e);
  }
}

/** Does the request; throws the WIT `error` variant. */
async function probe(parameters, context) {
  let params;
  try {
    params = JSON.parse(parameters);
  } catch (e) {
    throw failure("invalid-input", `parameters are not JSON: ${e}`);
  }
  if (params === null || typeof params !== "object" || typeof params.url !== "string") {
    throw failure("invalid-input", "`url` (a string) is required");
  }
  const method = params.method ?? "GET";
  if (method !== "GET" && method !== "POST") {
    throw failure("invalid-input", `\`method\` must be GET or POST, not ${JSON.stringify(method)}`);
  }
  const init = { method, headers: { "x-stormhook-execution": context.executionId } };
  if (params.body !== undefined && params.body !== null) {
    if (method === "GET") {
      throw failure("invalid-input", "a GET request has no body");
    }
    init.body = JSON.stringify(params.body);
    init.headers["content-type"] = "application/json";
  }
  // Messages name the URL without its query or credentials, which may hold secrets.
  let shown;
  try {
    const url = new URL(params.url);
    shown = `${url.protocol}//${url.host}${url.pathname}`;
  } catch (e) {
    throw failure("invalid-input", `\`url\` is not a URL: ${e}`);
  }
  let response;
  let text;
  try {
    response = await fetch(params.url, init);
    text = await response.text();
  } catch (e) {
    throw failure("upstream", `${method} ${shown}: ${e}`);
  }
  return JSON.stringify({ status: response.status, body: text });
}
