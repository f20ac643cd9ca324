"use strict";
// Sends the comment to /detect-toxic and draws one labelled bar per score.
// Served from 'self' only (the page's Content-Security-Policy forbids anything else).
(function () {
  const form = document.getElementById("score-form");
  const comment = document.getElementById("comment");
  const button = document.getElementById("score-button");
  const errorBox = document.getElementById("error");
  const results = document.getElementById("results");
  const bars = document.getElementById("bars");

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

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    errorBox.hidden = true;
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
    } catch (err) {
      showError("Could not reach the service: " + err.message);
      results.hidden = true;
    } finally {
      button.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });
})();
