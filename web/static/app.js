/* sheets-sync pages: Refresh without a reload, live run status, Test key, Check access.
 *
 * Loaded with `defer` from static/ (the Content-Security-Policy allows no inline script).
 * Every page works without this file; it only makes the common actions faster.
 * Text from the server is always set with textContent, never parsed as HTML.
 */
(function () {
  "use strict";

  var POLL_MS = 700;
  var FINAL = { succeeded: true, failed: true, interrupted: true };

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function request(url, options) {
    options = options || {};
    var headers = {
      "Accept": "application/json",
      "X-Requested-With": "fetch",
    };
    if (options.method && options.method !== "GET") {
      headers["X-CSRFToken"] = csrfToken();
    }
    return fetch(url, {
      method: options.method || "GET",
      body: options.body,
      headers: headers,
      credentials: "same-origin",
      cache: "no-store",
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (data) {
          return { ok: response.ok, status: response.status, data: data };
        });
    });
  }

  function errorText(result, fallback) {
    var data = result && result.data;
    if (data && data.error && data.error.message) return data.error.message;
    if (result && result.status === 401) return "Your session has ended: sign in again.";
    return fallback;
  }

  // --- the run block of a connection --------------------------------------------------

  function field(block, name) {
    return block.querySelector('[data-field="' + name + '"]');
  }

  function show(el, visible) {
    if (el) el.hidden = !visible;
  }

  function renderRun(block, run) {
    block.className = "run run-" + run.status;
    block.setAttribute("data-status", run.status);
    block.setAttribute("data-status-url", run.status_url);
    block.setAttribute("data-active", run.active ? "true" : "false");

    var badge = field(block, "status");
    badge.className = "badge badge-" + run.status;
    badge.textContent = run.status_label;

    var when = field(block, "when");
    when.textContent = run.when_relative + " · " + run.when_utc;
    when.setAttribute("datetime", run.finished_at || run.started_at || run.queued_at || "");

    var rows = field(block, "rows");
    var hasRows = run.rows_written !== null && run.rows_written !== undefined;
    rows.textContent = hasRows ? run.rows_written + " rows written" : "";
    show(rows, hasRows);

    var link = field(block, "tab-link");
    if (run.sheet_url) link.setAttribute("href", run.sheet_url);
    show(link, Boolean(run.sheet_url));

    var error = field(block, "error");
    error.textContent = run.error ? run.error.message : "";
    show(error, Boolean(run.error));

    var card = block.closest("[data-connection-id]");
    var button = card && card.querySelector("[data-refresh-button]");
    if (button) {
      button.disabled = Boolean(run.active);
      button.textContent = run.active ? "Refreshing…" : "Refresh";
    }
    if (run.status === "succeeded") {
      // "Press Refresh to fill the sheet", "Not shared yet": done with once it worked.
      document
        .querySelectorAll('[data-until-refresh="' + String(run.connection_id) + '"]')
        .forEach(function (el) {
          el.remove();
        });
      var failing = card && card.querySelector("[data-failing]");
      if (failing) failing.remove();
    }
  }

  function showRunError(block, message) {
    var error = field(block, "error");
    error.textContent = message;
    show(error, true);
    var card = block.closest("[data-connection-id]");
    var button = card && card.querySelector("[data-refresh-button]");
    if (button) {
      button.disabled = false;
      button.textContent = "Refresh";
    }
  }

  var polling = new WeakMap();

  function poll(block) {
    if (polling.get(block)) return;
    polling.set(block, true);
    var failures = 0;
    function tick() {
      var url = block.getAttribute("data-status-url");
      request(url).then(
        function (result) {
          if (result.ok && result.data.run) {
            failures = 0;
            renderRun(block, result.data.run);
            if (FINAL[result.data.run.status]) {
              polling.set(block, false);
              return;
            }
          } else if (result.status === 401 || result.status === 404) {
            polling.set(block, false);
            showRunError(block, errorText(result, "This run is no longer available."));
            return;
          } else {
            failures += 1;
          }
          window.setTimeout(tick, failures ? Math.min(POLL_MS * (1 + failures), 10000) : POLL_MS);
        },
        function () {
          failures += 1;
          window.setTimeout(tick, Math.min(POLL_MS * (1 + failures), 10000));
        }
      );
    }
    window.setTimeout(tick, POLL_MS);
  }

  function setUpRefresh(form) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var card = form.closest("[data-connection-id]");
      var block = card.querySelector("[data-run]");
      var button = form.querySelector("[data-refresh-button]");
      button.disabled = true;
      button.textContent = "Refreshing…";
      request(form.getAttribute("action"), { method: "POST", body: new FormData(form) }).then(
        function (result) {
          if (result.ok && result.data.run) {
            renderRun(block, result.data.run);
            if (!FINAL[result.data.run.status]) poll(block);
          } else {
            showRunError(block, errorText(result, "Could not start the refresh. Reload the page and try again."));
          }
        },
        function () {
          showRunError(block, "Could not reach sheets-sync. Check your connection and try again.");
        }
      );
    });
  }

  // --- the connection form --------------------------------------------------------------

  var UUID = /^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i;

  // As the server splits (forms.split_campaign_ids): by commas, semicolons and lines, and
  // by spaces only between ids, so a name typed by mistake stays whole in its message.
  function splitIds(text) {
    var out = [];
    text.split(/[,;\n]+/).forEach(function (piece) {
      piece = piece.trim();
      if (!piece) return;
      var words = piece.split(/\s+/);
      if (words.every(function (word) { return UUID.test(word); })) {
        out.push.apply(out, words);
      } else {
        out.push(piece);
      }
    });
    return out;
  }

  function setUpCampaignPicker(form) {
    var picker = form.querySelector("[data-campaign-picker]");
    var text = form.querySelector('input[name="campaign_ids"]');
    if (!picker || !text) return null;

    function boxes() {
      return Array.prototype.slice.call(picker.querySelectorAll('input[type="checkbox"]'));
    }

    function syncText() {
      if (!boxes().length) return; // nothing to merge: leave the typed text as it is
      var listed = {};
      boxes().forEach(function (box) {
        listed[box.value] = true;
      });
      var kept = splitIds(text.value).filter(function (id) {
        return !listed[id];
      });
      boxes().forEach(function (box) {
        if (box.checked) kept.push(box.value);
      });
      text.value = kept.join(", ");
    }

    function syncBoxes() {
      var chosen = {};
      splitIds(text.value).forEach(function (id) {
        chosen[id] = true;
      });
      boxes().forEach(function (box) {
        box.checked = Boolean(chosen[box.value]);
      });
    }

    picker.addEventListener("change", syncText);
    text.addEventListener("input", syncBoxes);
    syncText();

    return function fill(campaigns) {
      picker.textContent = "";
      if (!campaigns.length) {
        var none = document.createElement("p");
        none.className = "muted";
        none.textContent = "No campaigns in this workspace yet.";
        picker.appendChild(none);
        return;
      }
      var hint = document.createElement("p");
      hint.className = "muted";
      hint.textContent = "Tick the campaigns to include; none ticked = all campaigns combined.";
      picker.appendChild(hint);
      campaigns.forEach(function (campaign) {
        var label = document.createElement("label");
        label.className = "check";
        var box = document.createElement("input");
        box.type = "checkbox";
        box.name = "campaign";
        box.value = campaign.id;
        label.appendChild(box);
        label.appendChild(document.createTextNode(" " + campaign.name + " "));
        var id = document.createElement("span");
        id.className = "muted";
        id.textContent = campaign.id;
        label.appendChild(id);
        picker.appendChild(label);
      });
      syncBoxes();
    };
  }

  function showResult(container, state, message) {
    // state: "ok", "bad" or "pending"
    container.textContent = "";
    var p = document.createElement("p");
    p.className = state;
    p.textContent = message;
    container.appendChild(p);
  }

  function setUpActionButton(form, button, container, onSuccess) {
    button.addEventListener("click", function (event) {
      event.preventDefault();
      var original = button.textContent;
      button.disabled = true;
      button.textContent = original + "…";
      showResult(container, "pending", "Checking…");
      request(button.getAttribute("formaction"), { method: "POST", body: new FormData(form) })
        .then(
          function (result) {
            if (result.data && result.data.ok) {
              showResult(container, "ok", result.data.message);
              if (onSuccess) onSuccess(result.data);
            } else {
              showResult(container, "bad", errorText(result, "That did not work. Try again."));
            }
          },
          function () {
            showResult(container, "bad", "Could not reach sheets-sync. Try again.");
          }
        )
        .then(function () {
          button.disabled = false;
          button.textContent = original;
        });
    });
  }

  function toggleWith(select, targets, predicate) {
    function update() {
      targets.forEach(function (target) {
        if (target.el) target.el.hidden = !predicate(select.value, target.when);
      });
    }
    select.addEventListener("change", update);
    update();
  }

  function defaultTimeZone(form) {
    // A new connection's schedule starts in the browser's time zone, not in UTC.
    var select = form.querySelector("select[data-browser-timezone]");
    if (!select || !window.Intl || !Intl.DateTimeFormat) return;
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone) return;
    var known = Array.prototype.some.call(select.options, function (option) {
      return option.value === zone;
    });
    if (known) select.value = zone;
  }

  function focusErrorSummary() {
    var summary = document.querySelector("[data-error-summary]");
    if (summary) summary.focus();
  }

  function setUpConnectionForm(form) {
    defaultTimeZone(form);
    focusErrorSummary();
    var fill = setUpCampaignPicker(form);
    var testButton = form.querySelector("[data-test-key]");
    if (testButton) {
      setUpActionButton(form, testButton, form.querySelector("[data-test-result]"), function (data) {
        if (fill) fill(data.campaigns || []);
      });
    }
    var accessButton = form.querySelector("[data-check-access]");
    if (accessButton) {
      setUpActionButton(form, accessButton, form.querySelector("[data-access-result]"));
    }

    var preset = form.querySelector('select[name="date_preset"]');
    var custom = form.querySelector("[data-custom-range]");
    if (preset && custom) {
      toggleWith(preset, [{ el: custom }], function (value) {
        return value === "custom";
      });
    }

    var schedule = form.querySelector('select[name="schedule"]');
    if (schedule) {
      toggleWith(
        schedule,
        [
          { el: form.querySelector("[data-schedule-time]"), when: ["daily", "weekly"] },
          { el: form.querySelector("[data-schedule-weekday]"), when: ["weekly"] },
          { el: form.querySelector("[data-schedule-zone]"), when: ["daily", "weekly"] },
        ],
        function (value, when) {
          return when.indexOf(value) !== -1;
        }
      );
    }
  }

  // --- small helpers: copy buttons, confirmations ------------------------------------------

  function setUpCopy(button) {
    button.addEventListener("click", function () {
      var source = document.querySelector(button.getAttribute("data-copy"));
      if (!source) return;
      var text = source.textContent.trim();
      function done() {
        var original = button.getAttribute("data-label") || button.textContent;
        button.setAttribute("data-label", original);
        button.textContent = "Copied";
        window.setTimeout(function () {
          button.textContent = original;
        }, 1500);
      }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(text).then(done, function () {
          selectText(source);
        });
      } else {
        selectText(source);
      }
    });
  }

  function selectText(el) {
    var range = document.createRange();
    range.selectNodeContents(el);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function setUpConfirm(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  function init() {
    document.querySelectorAll("form[data-refresh]").forEach(setUpRefresh);
    document.querySelectorAll('[data-run][data-active="true"]').forEach(poll);
    document.querySelectorAll("form[data-connection-form]").forEach(setUpConnectionForm);
    document.querySelectorAll("[data-copy]").forEach(setUpCopy);
    document.querySelectorAll("form[data-confirm]").forEach(setUpConfirm);
    document.documentElement.classList.add("js");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
