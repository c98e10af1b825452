"""GET /api/docs: a self-contained page (no CDN: servers may be offline) that renders
/api/swagger.json as a list of routes with their bodies and responses."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>SelfPrivacy API</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
h2{margin-top:1.6em;border-bottom:1px solid #ccc}
details{border:1px solid #ddd;border-radius:4px;margin:.3em 0;padding:.3em .6em}
summary{cursor:pointer}
.m{display:inline-block;width:4.5em;font-weight:bold;font-family:monospace}
.GET{color:#1565c0}.POST{color:#2e7d32}.PUT{color:#ef6c00}.DELETE{color:#c62828}
code,pre{font-family:monospace;background:#f5f5f5}
pre{padding:.5em;overflow:auto}
.lock{color:#777;margin-left:.4em;vertical-align:-.1em}
</style></head><body>
<h1 id="title">SelfPrivacy API</h1>
<p id="about"></p>
<div id="routes">Loading <a href="swagger.json">swagger.json</a>...</div>
<script>
"use strict";
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  Object.assign(e, attrs || {});
  for (const k of kids) e.append(k);
  return e;
};
const json = v => JSON.stringify(v, null, 2);
// Drawn, not a character: a lock emoji is a missing-glyph box on a server without emoji fonts.
const LOCK = '<svg viewBox="0 0 16 16" width="1em" height="1em" role="img" aria-label="needs a token">' +
  '<title>needs a token</title><rect x="3" y="7" width="10" height="8" rx="1.5" fill="currentColor"/>' +
  '<path d="M5.5 7V5a2.5 2.5 0 0 1 5 0v2" fill="none" stroke="currentColor" stroke-width="1.5"/></svg>';
fetch("swagger.json").then(r => r.json()).then(doc => {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("about").textContent = doc.info.description || "";
  const groups = {};
  for (const [path, ops] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(ops))
      (groups[(op.tags || ["other"])[0]] ||= []).push([method.toUpperCase(), path, op]);
  const root = document.getElementById("routes");
  root.textContent = "";
  for (const [tag, ops] of Object.entries(groups)) {
    root.append(el("h2", {textContent: tag}));
    for (const [method, path, op] of ops) {
      const d = el("details", {},
        el("summary", {}, el("span", {className: "m " + method, textContent: method}),
           el("code", {textContent: path}), " " + (op.summary || ""),
           el("span", {className: "lock", innerHTML: op.security && op.security.length ? LOCK : ""})));
      const body = op.requestBody && op.requestBody.content["application/json"].schema;
      if (body) d.append(el("p", {textContent: "Body" + (op.requestBody.required ? "" : " (optional)")}),
                         el("pre", {textContent: json(body)}));
      for (const [status, r] of Object.entries(op.responses)) {
        const schema = r.content && r.content["application/json"].schema;
        d.append(el("p", {}, el("b", {textContent: status}), " " + r.description));
        if (schema && Object.keys(schema).length) d.append(el("pre", {textContent: json(schema)}));
      }
      root.append(d);
    }
  }
}).catch(e => { document.getElementById("routes").textContent = "Cannot load swagger.json: " + e; });
</script>
</body></html>
"""
