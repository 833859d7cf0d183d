// Evidence export. The form: show the UTC times the server holds as local times in the pickers, and send the
// picked local times as UTC ISO in the hidden fields. The job page: poll progress.json until the export is ready
// (or failed), then show the download link. Same origin only; no inline script (CSP).
(function () {
  "use strict";
  const pad = (n) => String(n).padStart(2, "0");
  const toLocalInput = (iso) => {
    const d = new Date(iso);
    if (isNaN(d)) return "";
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };

  const form = document.getElementById("export-form");
  if (form) {
    const tz = document.getElementById("tz");
    if (tz) tz.textContent = Intl.DateTimeFormat().resolvedOptions().timeZone || tz.textContent;
    const pickers = Array.from(form.querySelectorAll("input[data-utc]"));
    for (const picker of pickers) {
      const hidden = document.getElementById(picker.dataset.utc);
      if (hidden.value && !picker.value) picker.value = toLocalInput(hidden.value);
    }
    form.addEventListener("submit", () => {
      for (const picker of pickers) {
        // A datetime-local value ("2026-01-02T04:05:06") without an offset is read as local time.
        const d = picker.value ? new Date(picker.value) : null;
        document.getElementById(picker.dataset.utc).value = d && !isNaN(d) ? d.toISOString() : "";
      }
    });
  }

  const job = document.getElementById("export-job");
  if (!job) return;
  const bar = document.getElementById("export-progress");
  const status = document.getElementById("export-status");
  const error = document.getElementById("export-error");
  const gaps = document.getElementById("export-gaps");
  const link = document.getElementById("export-download");
  const mb = (n) => (n / 1048576).toFixed(1);

  function show(p) {
    bar.value = p.percent;
    bar.textContent = `${p.percent} %`;
    job.dataset.state = p.state;
    if (p.state === "ready") {
      status.textContent = `Ready: ${p.total} clip(s) checked, ${mb(p.bytes_total)} MB of video.`;
      link.hidden = false;
      if (p.gaps && p.gaps.length) {
        gaps.replaceChildren(...p.gaps.map((g) => Object.assign(document.createElement("li"), { textContent: g })));
        gaps.hidden = false;
      }
    } else if (p.state === "failed") {
      status.textContent = "The export failed.";
      error.textContent = p.error;
      error.hidden = false;
    } else {
      status.textContent = `Checking clip signatures: ${p.done} of ${p.total} clips (${mb(p.bytes_done)} of ` +
        `${mb(p.bytes_total)} MB).`;
    }
    return p.state === "checking";
  }

  async function poll() {
    try {
      const response = await fetch(job.dataset.progress, { cache: "no-store", credentials: "same-origin" });
      if (response.status === 404) {
        status.textContent = "This export is no longer here (cleared after an hour, or you logged in again).";
        return;
      }
      if (response.ok && !show(await response.json())) return;
    } catch (e) { /* a dropped request: try again */ }
    setTimeout(poll, 500);
  }
  if (job.dataset.state === "checking") poll();
})();
