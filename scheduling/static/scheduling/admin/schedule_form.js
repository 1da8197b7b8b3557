/*
 * Schedule change form: show only the fields of the chosen trigger type and the options of
 * the chosen registered type, and keep the "Next runs" preview in step with the form before
 * it is saved.
 *
 * Without JavaScript every trigger fieldset and every type's options stay on the page (the
 * others than the chosen ones collapsed) and the preview shows the saved trigger; this
 * script only improves on that.
 */
"use strict";
(function () {
  function ready(callback) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", callback);
    } else {
      callback();
    }
  }

  function showTriggerFields(type) {
    document.querySelectorAll("fieldset.scheduling-trigger").forEach(function (fieldset) {
      var chosen = fieldset.classList.contains("scheduling-trigger-" + type);
      fieldset.classList.toggle("is-hidden", !chosen);
      var details = fieldset.querySelector("details");
      if (chosen && details) {
        details.open = true;
      }
    });
  }

  // The class of a type's options fieldset (forms.option_fieldset_class).
  function optionsClass(key) {
    return "scheduling-options-" + key.replace(/[^A-Za-z0-9_-]/g, "-");
  }

  function showOptions(key) {
    document.querySelectorAll("fieldset.scheduling-options").forEach(function (fieldset) {
      var chosen = key !== "" && fieldset.classList.contains(optionsClass(key));
      fieldset.classList.toggle("is-hidden", !chosen);
      var details = fieldset.querySelector("details");
      if (chosen && details) {
        details.open = true;
      }
    });
  }

  function renderPreview(container, data) {
    var runs = container.querySelector(".scheduling-preview-runs");
    var errors = container.querySelector(".scheduling-preview-errors");
    runs.replaceChildren();
    errors.replaceChildren();
    (data.runs || []).forEach(function (run) {
      var item = document.createElement("li");
      var time = document.createElement("time");
      time.dateTime = run.iso;
      time.title = run.utc;
      time.textContent = run.local;
      item.appendChild(time);
      runs.appendChild(item);
    });
    if (data.ok && !(data.runs || []).length) {
      var none = document.createElement("li");
      none.textContent = container.dataset.noRuns || "No further runs.";
      runs.appendChild(none);
    }
    (data.errors || []).forEach(function (message) {
      var item = document.createElement("li");
      item.textContent = message;
      errors.appendChild(item);
    });
  }

  function previewer(form, container) {
    var timer = null;
    var sequence = 0;
    return function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        var body = new FormData(form);
        body.set("object_id", container.dataset.objectId || "");
        var current = ++sequence;
        container.classList.add("is-loading");
        fetch(container.dataset.previewUrl, {
          method: "POST",
          body: body,
          credentials: "same-origin",
          headers: { "X-Requested-With": "XMLHttpRequest" },
        })
          .then(function (response) {
            return response.json();
          })
          .then(function (data) {
            if (current === sequence) {
              renderPreview(container, data);
              if (data.timezone) {
                // The zone the form's times read in, for the notes beside them.
                document.dispatchEvent(
                  new CustomEvent("scheduling:zone", { detail: { zone: data.timezone } })
                );
              }
            }
          })
          .catch(function () {
            if (current === sequence) {
              renderPreview(container, { ok: false, errors: ["The preview is unavailable."] });
            }
          })
          .finally(function () {
            container.classList.remove("is-loading");
          });
      }, 300);
    };
  }

  ready(function () {
    var typeSelect = document.querySelector("select.scheduling-type");
    if (typeSelect) {
      showOptions(typeSelect.value);
      typeSelect.addEventListener("change", function () {
        showOptions(typeSelect.value);
      });
    }
    var select = document.getElementById("id_trigger_type");
    if (!select || !select.form) {
      return; // a read-only page: nothing to keep in step
    }
    var form = select.form;
    showTriggerFields(select.value);
    select.addEventListener("change", function () {
      showTriggerFields(select.value);
    });
    var container = document.querySelector(".scheduling-preview[data-preview-url]");
    if (!container) {
      return;
    }
    var refresh = previewer(form, container);
    form.addEventListener("input", refresh);
    form.addEventListener("change", refresh);
    refresh();
  });
})();
