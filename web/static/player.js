// The day page: a 24-hour timeline, filters, and a player with previous/next clip. Playback uses hls.js over the
// byte-range playlist where MSE exists, native HLS on Safari, and the progressive MP4 (HTTP Range) otherwise.
// Everything comes from this origin; clip facts come from the list's data-* attributes.
(function () {
  const video = document.getElementById("video");
  const panel = document.getElementById("player");
  if (!video || !panel) return;
  const items = Array.from(document.querySelectorAll("li.clip"));
  const $ = (id) => document.getElementById(id);
  const timeline = $("timeline");
  const dayStart = Date.parse(timeline.dataset.dayStart);
  let hls = null;
  let current = -1;

  function details(li) {
    const size = (Number(li.dataset.s) / 1048576).toFixed(2);
    return `${Number(li.dataset.d).toFixed(1)} s · ${li.dataset.r} · ${size} MB · clip #${li.dataset.q}`;
  }

  function play(index) {
    const li = items[index];
    if (!li) return;
    const key = li.dataset.key;
    const q = "?key=" + encodeURIComponent(key);
    if (current >= 0) items[current].classList.remove("playing");
    current = index;
    li.classList.add("playing");
    const group = li.closest("details");
    if (group) group.open = true;
    panel.hidden = false;
    const start = new Date(li.dataset.t);
    $("now-playing").textContent = start.toLocaleString();
    $("meta-details").textContent = details(li);
    $("meta-motion").hidden = li.dataset.m !== "1";
    $("meta-protected").hidden = li.dataset.p !== "1";
    $("download").href = "/media/clip.mp4" + q + "&download=1";
    const end = new Date(start.getTime() + Math.ceil(Number(li.dataset.d) * 1000));
    $("export-clip").href = "/export?device=" + encodeURIComponent($("hours").dataset.device) +
      "&start=" + encodeURIComponent(start.toISOString()) + "&end=" + encodeURIComponent(end.toISOString());
    if ($("protect-form")) {   // admins only: a viewer's page comes without the evidence form
      $("protect-key").value = key;
      $("protect-value").value = li.dataset.p === "1" ? "0" : "1";
      $("protect-button").textContent = li.dataset.p === "1" ? "Remove evidence mark" : "Protect as evidence";
      $("protect-next").value = location.pathname + "#" + key;
    }
    $("cursor").setAttribute("x", String((start.getTime() - dayStart) / 60000));
    history.replaceState(null, "", "#" + key);
    video.dataset.key = key;
    $("unplayable").hidden = true;
    if (li.dataset.x !== "1" && !playable(li.dataset.c)) {
      // H.265 where the browser has no HEVC decoder: say so, never a silent black box.
      if (hls) { hls.destroy(); hls = null; }
      video.removeAttribute("src");
      video.load();
      $("unplayable").textContent = codecName(li.dataset.c) + " cannot be decoded by this browser. " +
        "Use Download or Export to play it in another player (VLC, mpv), or open it in a browser with " +
        "HEVC support (Safari, Edge, Chrome with hardware decoding).";
      $("unplayable").hidden = false;
      return;
    }
    if (li.dataset.x === "1") {   // a tombstone: the object was deleted outside CryoSpy
      if (hls) { hls.destroy(); hls = null; }
      video.removeAttribute("src");
      $("meta-details").textContent = "Deleted from the storage outside CryoSpy; nothing left to play.";
      return;
    }
    loadHls().then(() => {
      if (current !== index) return;   // another clip was picked meanwhile
      if (hls) { hls.destroy(); hls = null; }
      if (window.Hls && window.Hls.isSupported()) {
        hls = new window.Hls({ enableWorker: false });
        hls.loadSource("/media/clip.m3u8" + q);
        hls.attachMedia(video);
      } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
        video.src = "/media/clip.m3u8" + q;
      } else {
        video.src = "/media/clip.mp4" + q;
      }
      video.play().catch(() => {});
    });
  }

  function playable(codecs) {
    if (!codecs) return true;
    const mime = 'video/mp4; codecs="' + codecs + '"';
    if (window.MediaSource && MediaSource.isTypeSupported(mime)) return true;
    return video.canPlayType(mime) !== "";
  }
  function codecName(codecs) {
    return /^(hvc1|hev1)/.test(codecs || "") ? "This clip is H.265 (HEVC), which" : "This clip's codec (" +
      codecs + ")";
  }

  // hls.js (about 120 KB) loads when it is first needed, or as soon as the pointer nears the clips, not with
  // the page: a day page mostly gets looked at before anything is played.
  let hlsLoading = null;
  function loadHls() {
    if (window.Hls) return Promise.resolve();
    if (!hlsLoading) {
      hlsLoading = new Promise((resolve) => {
        const script = document.createElement("script");
        script.src = "/static/hls.light.min.js";
        script.onload = resolve;
        script.onerror = resolve;   // then native HLS or the progressive MP4
        document.head.appendChild(script);
      });
    }
    return hlsLoading;
  }
  for (const id of ["hours", "timeline"]) {
    $(id).addEventListener("pointerover", loadHls, { once: true });
    $(id).addEventListener("touchstart", loadHls, { once: true, passive: true });
  }

  function step(direction) {
    for (let i = current + direction; i >= 0 && i < items.length; i += direction) {
      if (!items[i].hidden) { play(i); return true; }
    }
    return false;
  }

  for (const [i, li] of items.entries()) {
    li.querySelector("a.play").addEventListener("click", (ev) => { ev.preventDefault(); play(i); });
  }
  $("prev-clip").addEventListener("click", () => step(-1));
  $("next-clip").addEventListener("click", () => step(1));
  video.addEventListener("ended", () => { if ($("autoplay-next").checked) step(1); });

  // Timeline: a click picks the visible clip covering that moment, else the next one after it, else the last.
  timeline.addEventListener("click", (ev) => {
    const box = timeline.getBoundingClientRect();
    const at = dayStart + ((ev.clientX - box.left) / box.width) * 86400000;
    let pick = -1;
    for (const [i, li] of items.entries()) {
      if (li.hidden) continue;
      const t = Date.parse(li.dataset.t);
      if (t + Number(li.dataset.d) * 1000 < at) { pick = i; continue; }
      pick = i;
      break;
    }
    if (pick >= 0) play(pick);
  });

  // Filters: motion only, and a time-of-day range in the viewer's time zone (a range may wrap past midnight).
  function minutes(value) {
    if (!value) return null;
    const [h, m] = value.split(":").map(Number);
    return h * 60 + m;
  }
  function applyFilters() {
    const motionOnly = $("only-motion").checked;
    const from = minutes($("from").value), to = minutes($("to").value);
    let shown = 0;
    for (const li of items) {
      const d = new Date(li.dataset.t);
      const m = d.getHours() * 60 + d.getMinutes();
      let inRange = true;
      if (from !== null && to !== null) inRange = from <= to ? m >= from && m <= to : m >= from || m <= to;
      else if (from !== null) inRange = m >= from;
      else if (to !== null) inRange = m <= to;
      li.hidden = !(inRange && (!motionOnly || li.dataset.m === "1"));
      if (!li.hidden) shown += 1;
    }
    const filtering = motionOnly || from !== null || to !== null;
    for (const group of document.querySelectorAll("details.hour")) {
      group.hidden = !group.querySelector("li.clip:not([hidden])");
      if (filtering && !group.hidden) group.open = true;   // show what the filter found
    }
    $("shown").textContent = `${shown} of ${items.length} clips shown`;
  }
  for (const id of ["only-motion", "from", "to"]) $(id).addEventListener("input", applyFilters);
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  applyFilters();

  // A link to a clip is the day page with the clip's key as the fragment.
  function playFromHash() {
    const wanted = decodeURIComponent(location.hash.slice(1));
    const i = wanted ? items.findIndex((li) => li.dataset.key === wanted) : -1;
    if (i >= 0 && i !== current) play(i);
  }
  window.addEventListener("hashchange", playFromHash);
  playFromHash();
})();
