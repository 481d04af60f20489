"""The rater's page: plain HTML, CSS and JavaScript served by the app (no build step).

Consent first, then one pair at a time (click an image, or press ← / → or 1 / 2), a progress
bar, and the completion code at the end. The rater id comes from the URL (``?PROLIFIC_PID=``,
``?PARTICIPANT_ID=`` or ``?rater=``); the rater's token stays in the browser's localStorage, so
a reload or a later visit continues where the rater left. An answer is shown as stored only
after the server confirmed it; a failed request is retried with the same answer (the server
stores it once).
"""

from __future__ import annotations

__all__ = ["APP_JS", "PAGE_HTML"]

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Which image looks more like the digit?</title>
<style>
  body { font: 17px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 760px; padding: 12px;
         color: #111; background: #fafafa; }
  h1 { font-size: 1.35em; margin: .4em 0; }
  .screen[hidden] { display: none; }
  .progress { height: 10px; background: #ddd; border-radius: 5px; overflow: hidden; }
  .progress > div { height: 100%; width: 0; background: #2b6cb0; transition: width .2s; }
  .count { font-size: .9em; color: #444; margin: 4px 0 10px; }
  .question { font-size: 1.3em; font-weight: 600; text-align: center; margin: 8px 0 14px; }
  .pair { display: flex; gap: 4vw; justify-content: center; }
  .pair button { flex: 0 1 46%; max-width: 300px; padding: 8px; border: 3px solid #999;
                 border-radius: 8px; background: #fff; cursor: pointer; font: inherit; }
  .pair button:hover, .pair button:focus-visible { border-color: #2b6cb0; outline: none; }
  .pair button:disabled { opacity: .5; cursor: wait; }
  .pair img { width: 100%; aspect-ratio: 1; image-rendering: pixelated; display: block;
              background: #000; }
  .key { display: block; margin-top: 6px; color: #333; }
  .hint { text-align: center; color: #555; font-size: .9em; }
  .error { color: #b00020; min-height: 1.4em; text-align: center; }
  .code { font: 700 1.8em monospace; letter-spacing: .1em; background: #fff; padding: 8px 14px;
          border: 2px dashed #2b6cb0; display: inline-block; }
  .start { font: inherit; font-size: 1.1em; padding: 10px 22px; border-radius: 6px;
           background: #2b6cb0; color: #fff; border: 0; cursor: pointer; }
</style>
</head>
<body>
<main>
  <section id="consent" class="screen">
    <h1>Which image looks more like the digit?</h1>
    <p>You will see pairs of small images of handwritten digits that were changed by a
    computer. For each pair, choose the image that looks more like the digit named above it.
    There are no right or wrong answers for most pairs; go with your first impression.
    A few pairs check that you are paying attention.</p>
    <p>It takes a few minutes. Your answers are stored without your name, only with the
    participant id of the link you followed, and are used for research on how people see
    such images. You may stop at any time; you can come back to this page in the same browser
    and continue where you left.</p>
    <p>Answer with a click or tap on an image, or with the keys <b>&larr;</b> / <b>&rarr;</b>
    (or <b>1</b> / <b>2</b>).</p>
    <p><button id="start" class="start" type="button">I agree, start</button></p>
  </section>
  <section id="task" class="screen" hidden>
    <div class="progress" role="progressbar" aria-valuemin="0" id="bar"><div></div></div>
    <div class="count" id="count"></div>
    <div class="question" id="question" aria-live="polite"></div>
    <div class="pair">
      <button id="left" type="button" aria-label="left image"><img alt="left image"><span class="key">&larr; or 1</span></button>
      <button id="right" type="button" aria-label="right image"><img alt="right image"><span class="key">&rarr; or 2</span></button>
    </div>
    <p class="hint">Click the image, or press &larr; / &rarr;.</p>
  </section>
  <section id="done" class="screen" hidden>
    <h1>Thank you!</h1>
    <p>You answered every pair. Your completion code:</p>
    <p><span class="code" id="code"></span></p>
    <p>Copy it into the study platform to finish.</p>
  </section>
  <p class="error" id="error" role="alert"></p>
</main>
<script src="/app.js"></script>
</body>
</html>
"""

APP_JS = """'use strict';
(() => {
  const params = new URLSearchParams(location.search);
  const pid = params.get('PROLIFIC_PID') || params.get('PARTICIPANT_ID') || params.get('rater');
  const key = 'underfire-study:' + (pid || '(anonymous)');
  const $ = (id) => document.getElementById(id);
  let state = null, shownAt = 0, busy = false;

  const saved = () => { try { return JSON.parse(localStorage.getItem(key)); } catch (e) { return null; } };
  const show = (id) => { for (const s of ['consent', 'task', 'done']) $(s).hidden = s !== id; };
  const error = (text) => { $('error').textContent = text || ''; };

  async function post(path, body) {
    for (let attempt = 0; ; attempt++) {
      let res;
      try {
        res = await fetch(path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                 body: JSON.stringify(body)});
      } catch (e) {  // network down or server restarting: the same request again
        error('Connection lost; retrying…');
        await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** attempt, 5000)));
        continue;
      }
      const data = await res.json().catch(() => ({error: 'unexpected reply'}));
      if (res.ok) { error(''); return data; }
      if (res.status >= 500 && attempt < 8) {
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
        continue;
      }
      throw new Error(data.error || ('error ' + res.status));
    }
  }

  function render(next) {
    state = next;
    localStorage.setItem(key, JSON.stringify({rater: next.rater, token: next.token}));
    const bar = $('bar');
    bar.firstElementChild.style.width = (100 * next.done / next.total) + '%';
    bar.setAttribute('aria-valuemax', next.total);
    bar.setAttribute('aria-valuenow', next.done);
    if (next.code) { $('code').textContent = next.code; show('done'); return; }
    const item = next.item;
    $('count').textContent = 'Pair ' + item.position + ' of ' + item.total;
    $('question').textContent = item.question;
    const images = [$('left').querySelector('img'), $('right').querySelector('img')];
    let loaded = 0;
    const ready = () => { if (++loaded === 2) { shownAt = performance.now(); enable(true); } };
    enable(false);
    images[0].onload = images[1].onload = ready;
    images[0].onerror = images[1].onerror = () => error('An image did not load; reload the page.');
    images[0].src = item.left;
    images[1].src = item.right;
    show('task');
  }

  function enable(on) {
    busy = !on;
    $('left').disabled = $('right').disabled = !on;
    if (on) $('left').focus();
  }

  async function choose(side) {
    if (busy || !state || !state.item) return;
    enable(false);
    const ms = Math.max(0, Math.round(performance.now() - shownAt));
    try {
      render(await post('/api/answer', {rater: state.rater, token: state.token,
                                          item: state.item.id, choice: side, ms: ms}));
    } catch (e) { error(e.message); enable(true); }
  }

  async function start() {
    const creds = saved();
    const body = {rater: pid || (creds && creds.rater) || null};
    if (creds && creds.token && (!pid || creds.rater === pid)) body.token = creds.token;
    try { render(await post('/api/session', body)); } catch (e) { error(e.message); }
  }

  $('start').addEventListener('click', start);
  $('left').addEventListener('click', () => choose('left'));
  $('right').addEventListener('click', () => choose('right'));
  document.addEventListener('keydown', (ev) => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const side = {ArrowLeft: 'left', '1': 'left', ArrowRight: 'right', '2': 'right'}[ev.key];
    if (side && state && state.item) { ev.preventDefault(); choose(side); }
  });
  if (saved()) start(); else show('consent');
})();
"""
