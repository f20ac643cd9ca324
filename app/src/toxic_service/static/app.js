"use strict";
// Sends the comment to /detect-toxic and draws one labelled bar per score; then asks the Perspective
// drop-in (comments:analyze with spanAnnotations) for per-sentence TOXICITY and shades the worst sentence.
// Served from 'self' only (the page's Content-Security-Policy forbids anything else, inline script included).
// The comment is hostile input: it only ever reaches the page as textContent / text nodes, never as markup.
(function () {
  const form = document.getElementById("score-form");
  const comment = document.getElementById("comment");
  const button = document.getElementById("score-button");
  const errorBox = document.getElementById("error");
  const results = document.getElementById("results");
  const bars = document.getElementById("bars");
  const sentences = document.getElementById("sentences");
  const annotated = document.getElementById("annotated");
  const sentenceNote = document.getElementById("sentence-note");

  // Relative, like "detect-toxic", so the page works under any path prefix; the "./" keeps the colon in
  // "comments:analyze" from ever being read as a URL scheme.
  const ANALYZE_URL = "./v1alpha1/comments:analyze";
  const SHADE_AT = 0.5; // the bars' "high" threshold: a sentence is shaded only when it is likely toxic
  const FORBIDDEN = 403; // Google's PERMISSION_DENIED: the server requires an API key and the page has none

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  function percent(value) {
    return (value * 100).toFixed(1) + " %";
  }

  function drawBars(prediction) {
    bars.replaceChildren();
    for (const [label, value] of Object.entries(prediction)) {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "bar-label";
      name.id = "label-" + label;
      name.textContent = label.replace(/_/g, " ");
      const track = document.createElement("div");
      track.className = "bar-track";
      track.setAttribute("role", "meter");
      track.setAttribute("aria-labelledby", name.id);
      track.setAttribute("aria-valuemin", "0");
      track.setAttribute("aria-valuemax", "1");
      track.setAttribute("aria-valuenow", String(value));
      track.setAttribute("aria-valuetext", percent(value));
      track.dataset.label = label;
      const fill = document.createElement("div");
      fill.className = "bar-fill" + (value >= 0.5 ? " high" : "");
      fill.style.width = (Math.max(0, Math.min(1, value)) * 100).toFixed(2) + "%";
      track.appendChild(fill);
      const number = document.createElement("span");
      number.className = "bar-value";
      number.textContent = percent(value);
      item.append(name, track, number);
      bars.appendChild(item);
    }
    results.hidden = false;
  }

  // Shading is an extra: whatever goes wrong with it is a quiet note under the bars, never the error box.
  function sentenceNoteOnly(message) {
    annotated.replaceChildren();
    annotated.hidden = true;
    sentenceNote.textContent = message;
    sentences.hidden = false;
  }

  function isSpan(span, length) {
    return span && Number.isInteger(span.begin) && Number.isInteger(span.end) &&
      span.begin >= 0 && span.begin < span.end && span.end <= length &&
      span.score && typeof span.score.value === "number";
  }

  function drawWorstSentence(text, spans) {
    let worst = null;
    for (const span of spans) {
      if (isSpan(span, text.length) && (worst === null || span.score.value > worst.score.value)) {
        worst = span;
      }
    }
    if (worst === null) {
      sentenceNoteOnly("No sentence scores came back for this comment.");
      return;
    }
    const score = worst.score.value;
    annotated.replaceChildren();
    if (score >= SHADE_AT) {
      // begin/end are UTF-16 code units, as Perspective defines them, and UTF-16 code units are exactly
      // what JavaScript strings index: text.slice(begin, end) is the sentence, emoji and all, with no
      // conversion (Array.from(text), which counts code points, would be wrong here).
      const mark = document.createElement("mark");
      mark.id = "worst-sentence";
      mark.dataset.score = String(score);
      mark.textContent = text.slice(worst.begin, worst.end);
      annotated.append(
        document.createTextNode(text.slice(0, worst.begin)),
        mark,
        document.createTextNode(text.slice(worst.end)),
      );
      sentenceNote.textContent = "Shaded: the sentence most likely to be toxic (" + percent(score) + ").";
    } else {
      annotated.textContent = text;
      sentenceNote.textContent = "No sentence is likely toxic; the highest scores " + percent(score) + ".";
    }
    annotated.hidden = false;
    sentences.hidden = false;
  }

  async function shadeWorstSentence(text) {
    let response;
    let body = null;
    try {
      response = await fetch(ANALYZE_URL, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({
          comment: { text: text },
          requestedAttributes: { TOXICITY: {} },
          spanAnnotations: true,
        }),
      });
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (response && response.status === FORBIDDEN) {
      sentenceNoteOnly("Sentence shading is off: this server requires an API key for comments:analyze.");
      return;
    }
    const toxicity = response && response.ok && body && body.attributeScores && body.attributeScores.TOXICITY;
    if (!toxicity || !Array.isArray(toxicity.spanScores)) {
      const status = response ? " (HTTP " + response.status + ")" : "";
      sentenceNoteOnly("Sentence shading is not available" + status + ".");
      return;
    }
    drawWorstSentence(text, toxicity.spanScores);
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    errorBox.hidden = true;
    sentences.hidden = true;
    const text = comment.value;
    if (!text.trim()) {
      showError("Please type a comment first.");
      comment.focus();
      return;
    }
    button.disabled = true;
    form.setAttribute("aria-busy", "true");
    try {
      const response = await fetch("detect-toxic", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ sequence: text }),
      });
      let body = null;
      try {
        body = await response.json();
      } catch (_) {
        body = null;
      }
      if (!response.ok || !body || !body.prediction) {
        const detail = body && body.error ? body.error.message : "HTTP " + response.status;
        showError("Could not score this comment: " + detail);
        results.hidden = true;
        return;
      }
      drawBars(body.prediction);
      await shadeWorstSentence(text);
    } catch (err) {
      showError("Could not reach the service: " + err.message);
      results.hidden = true;
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
})();
