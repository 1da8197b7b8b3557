/*
 * The time zone select of a schedule (TimezoneSelect): searchable by any part of the name,
 * in any case and with spaces or underscores ("berlin", "new york"), with the admin's select2.
 * Without JavaScript, or without select2, it stays a plain select.
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

  function normalize(text) {
    return text.toLowerCase().replace(/[\s_]+/g, " ").trim();
  }

  function matcher(params, data) {
    var term = normalize(params.term || "");
    if (!term || normalize(data.text || "").indexOf(term) !== -1 ||
        normalize(data.id || "").indexOf(term) !== -1) {
      return data;
    }
    return null;
  }

  ready(function () {
    var $ = window.django && window.django.jQuery;
    if (!$ || !$.fn.select2) {
      return;
    }
    document.querySelectorAll("select.scheduling-timezone").forEach(function (select) {
      $(select).select2({ matcher: matcher, width: "resolve" });
      // select2 announces a choice to jQuery's handlers only: tell the page's own listeners
      // (the next-runs preview, the notes beside the times) as well.
      $(select).on("select2:select select2:clear", function () {
        select.dispatchEvent(new Event("change", { bubbles: true }));
      });
    });
  });
})();
