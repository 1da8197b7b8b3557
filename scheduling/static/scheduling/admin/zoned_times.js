/*
 * Dates and times that a schedule form reads in the schedule's time zone
 * (ZonedSplitDateTimeWidget). The admin's "Now" and its note about the browser's zone take
 * that zone for the server's; and the note beside each input ("Times are in Europe/Berlin.")
 * follows the time zone chosen on the page before it is saved, or the chosen tenant's.
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

  // Seconds east of UTC that ``zone`` is now, or null where the browser cannot tell.
  function offsetOf(zone) {
    try {
      var parts = new Intl.DateTimeFormat("en-US", {
        timeZone: zone,
        timeZoneName: "longOffset",
      }).formatToParts(new Date());
      var name = parts.filter(function (part) {
        return part.type === "timeZoneName";
      })[0].value;
      var match = /^GMT(?:([+-])(\d{2}):(\d{2}))?$/.exec(name);
      if (!match) {
        return null;
      }
      if (!match[1]) {
        return 0;
      }
      var seconds = Number(match[2]) * 3600 + Number(match[3]) * 60;
      return match[1] === "-" ? -seconds : seconds;
    } catch (error) {
      return null;
    }
  }

  ready(function () {
    var notes = document.querySelectorAll(".scheduling-zone-note");
    if (!notes.length) {
      return;
    }
    // DateTimeShortcuts reads this offset when the page has loaded (after this script).
    document.body.dataset.adminUtcOffset = notes[0].dataset.utcOffset;
    var template = notes[0].textContent.replace(notes[0].dataset.zone, "%(zone)s");

    function show(zone) {
      var offset = offsetOf(zone);
      notes.forEach(function (note) {
        note.textContent = template.replace("%(zone)s", zone);
        note.dataset.zone = zone;
      });
      if (offset !== null) {
        document.body.dataset.adminUtcOffset = String(offset);
      }
    }

    // The zone the server reads the times in, as the trigger preview answers it: the one
    // chosen, else the chosen tenant's (schedule_form.js sends the whole form).
    document.addEventListener("scheduling:zone", function (event) {
      if (event.detail && event.detail.zone) {
        show(event.detail.zone);
      }
    });
    var select = document.getElementById("id_timezone");
    if (!select || !select.form) {
      return;
    }
    var emptyText = select.dataset.emptyNote || "";
    select.addEventListener("change", function () {
      if (select.value) {
        show(select.value);
      } else if (emptyText) {
        // The tenant's zone: said in words until the preview names it.
        notes.forEach(function (note) {
          note.textContent = emptyText;
        });
      }
    });
  });
})();
