// Live view, for one camera or a grid of all.
//
// Seconds behind: asking /media/live-status.json tells the camera's agent (within a second, through its
// long-poll) that someone watches; it then sends each new fragment of the clip it is recording as a sealed
// live part, and the video plays /media/live-parts.m3u8 with low-latency hls.js settings. How far behind real
// time the picture is shows under it (now minus the capture time of the frame on screen, from the playlist's
// EXT-X-PROGRAM-DATE-TIME). Closing the page ends the asking; the agent stops a few seconds later.
//
// Fallback, said so on the page: when no parts come (an old agent, a camera that is not recording, a locked
// server), the video plays the sliding playlist of recorded clips (/media/live.m3u8), a clip's length plus a
// moment behind; without MSE the newest clip is polled and played as a progressive MP4.
(function () {
  const STATUS_EVERY_MS = 1000;
  const PARTS_WAIT_MS = 5000;      // no parts this long after opening (or after they stop): fall back
  const LIVE_HLS = {
    enableWorker: false, lowLatencyMode: false, liveSyncDuration: 1.0, liveMaxLatencyDuration: 4,
    maxLiveSyncPlaybackRate: 1.3, maxBufferLength: 4, backBufferLength: 6, initialLiveManifestSize: 1,
    manifestLoadingMaxRetry: 1000, manifestLoadingRetryDelay: 500, manifestLoadingMaxRetryTimeout: 2000,
    levelLoadingMaxRetry: 1000, levelLoadingRetryDelay: 500, levelLoadingMaxRetryTimeout: 2000,
    fragLoadingMaxRetry: 6, fragLoadingRetryDelay: 250,
  };
  const CLIPS_HLS = { enableWorker: false, liveSyncDurationCount: 2, manifestLoadingMaxRetry: 1000,
                      manifestLoadingRetryDelay: 2000, manifestLoadingMaxRetryTimeout: 10000 };

  function keyOf(url) {
    const q = url.indexOf("?");
    return q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get("key");
  }

  function follow(video) {
    const device = encodeURIComponent(video.dataset.liveDevice);
    const card = video.parentElement;
    const label = card.querySelector(".now-playing");
    const behind = card.querySelector(".behind");
    const mode = card.querySelector(".live-mode");
    const mse = window.Hls && window.Hls.isSupported();
    let hls = null, playing = null, lastParts = 0, sinceParts = performance.now(), poller = null;

    function say(text) { if (mode) mode.textContent = text; }
    function stop() { if (hls) { hls.destroy(); hls = null; } if (poller) { clearTimeout(poller); poller = null; } }

    function playParts() {
      stop();
      playing = "parts";
      video.dataset.mode = "parts";
      say("Live: seconds behind the camera.");
      if (!mse) { video.src = "/media/live-parts.m3u8?device=" + device; video.play().catch(() => {}); return; }
      hls = new window.Hls(LIVE_HLS);
      hls.on(window.Hls.Events.FRAG_CHANGED, (_e, data) => {
        if (data.frag.programDateTime) label.textContent = new Date(data.frag.programDateTime).toLocaleString();
      });
      hls.on(window.Hls.Events.ERROR, (_e, data) => { if (data.fatal) playClips("the live stream broke off"); });
      hls.loadSource("/media/live-parts.m3u8?device=" + device);
      hls.attachMedia(video);
      video.play().catch(() => {});
    }

    function playClips(why) {
      stop();
      playing = "clips";
      video.dataset.mode = "clips";
      delete video.dataset.behindMs;
      if (behind) behind.textContent = "";   // until the recorded clips play
      say("No live parts from this camera (" + why + "): showing its newest recorded clips, about a clip's " +
          "length behind. Live resumes by itself when parts arrive.");
      if (mse) {
        hls = new window.Hls(CLIPS_HLS);
        hls.on(window.Hls.Events.FRAG_CHANGED, (_e, data) => {
          if (keyOf(data.frag.url)) video.dataset.key = keyOf(data.frag.url);
          if (data.frag.programDateTime) label.textContent = new Date(data.frag.programDateTime).toLocaleString();
        });
        hls.on(window.Hls.Events.ERROR, (_e, data) => {
          if (data.fatal && playing === "clips") { hls.destroy(); hls = null; setTimeout(() => playing === "clips" && playClips(why), 3000); }
        });
        hls.loadSource("/media/live.m3u8?device=" + device);
        hls.attachMedia(video);
        video.play().catch(() => {});
      } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
        video.src = "/media/live.m3u8?device=" + device;
        video.play().catch(() => {});
      } else {
        pollNewest();
      }
    }

    function pollNewest() {
      let current = null;
      async function poll() {
        try {
          const r = await fetch("/media/latest.json?device=" + device, { credentials: "same-origin" });
          const doc = r.ok ? await r.json() : {};
          if (doc.clip && doc.clip.key !== current) {
            current = doc.clip.key;
            video.dataset.key = current;
            label.textContent = new Date(doc.clip.captured_at).toLocaleString();
            video.src = "/media/clip.mp4?key=" + encodeURIComponent(current);
            video.play().catch(() => {});
          }
        } catch (e) { /* the next poll tries again */ }
        if (playing === "clips") poller = setTimeout(poll, 2000);
      }
      poll();
    }

    // Asking for the status is what keeps the camera sending; a hidden tab stops asking (and so stops the parts).
    async function status() {
      if (!document.hidden) {
        try {
          const r = await fetch("/media/live-status.json?device=" + device, { credentials: "same-origin" });
          const doc = r.ok ? await r.json() : { parts: 0 };
          if (doc.parts > 0) sinceParts = performance.now();
          lastParts = doc.parts;
        } catch (e) { lastParts = 0; }
        const waited = performance.now() - sinceParts;
        if (lastParts > 0 && playing !== "parts") playParts();
        else if (lastParts === 0 && playing !== "clips" && waited > PARTS_WAIT_MS) {
          playClips(playing === "parts" ? "they stopped arriving" : "none arrived within " + PARTS_WAIT_MS / 1000 + " s");
        }
      }
      setTimeout(status, STATUS_EVERY_MS);
    }

    // How far behind real time the picture is: now minus the capture time of the frame on screen (both
    // playlists carry PROGRAM-DATE-TIME, so the fallback says how far behind it is too).
    setInterval(() => {
      if (!hls || !hls.playingDate) return;
      const ms = Date.now() - hls.playingDate.getTime();
      video.dataset.behindMs = String(Math.round(ms));
      if (behind) behind.textContent = (ms / 1000).toFixed(1) + " s behind real time";
    }, 250);

    say("Asking the camera for live view…");
    status();
  }
  document.querySelectorAll("video[data-live-device]").forEach(follow);
})();
