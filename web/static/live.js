// Live view, for one camera or a grid of all. Where hls.js runs (MSE), each video plays the camera's sliding live
// playlist (/media/live.m3u8): hls.js reloads it and moves on to each new clip's segments as they arrive, a clip's
// length plus ingest behind real time. Safari plays the same playlist natively. Elsewhere the newest clip is
// polled and played as a progressive MP4. Everything comes from this origin.
(function () {
  function keyOf(url) {
    const q = url.indexOf("?");
    return q < 0 ? null : new URLSearchParams(url.slice(q + 1)).get("key");
  }
  function show(video, label, key, when) {
    if (key) video.dataset.key = key;
    if (when) label.textContent = new Date(when).toLocaleString();
  }
  function follow(video) {
    const device = encodeURIComponent(video.dataset.liveDevice);
    const label = video.parentElement.querySelector(".now-playing");
    const playlist = "/media/live.m3u8?device=" + device;
    if (window.Hls && window.Hls.isSupported()) {
      let hls = null;
      const start = () => {
        hls = new window.Hls({ enableWorker: false, liveSyncDurationCount: 2, manifestLoadingMaxRetry: 1000,
                               manifestLoadingRetryDelay: 2000, manifestLoadingMaxRetryTimeout: 10000 });
        hls.on(window.Hls.Events.FRAG_CHANGED, (_e, data) => show(video, label, keyOf(data.frag.url),
                                                                  data.frag.programDateTime));
        hls.on(window.Hls.Events.ERROR, (_e, data) => {
          if (data.fatal) { hls.destroy(); setTimeout(start, 3000); }   // e.g. no clip yet: try again
        });
        hls.loadSource(playlist);
        hls.attachMedia(video);
        video.play().catch(() => {});
      };
      start();
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = playlist;
      video.play().catch(() => {});
    } else {
      pollNewest(video, label, device);
    }
  }
  function pollNewest(video, label, device) {
    let current = null;
    async function poll() {
      try {
        const r = await fetch("/media/latest.json?device=" + device, { credentials: "same-origin" });
        const doc = r.ok ? await r.json() : {};
        if (doc.clip && doc.clip.key !== current) {
          current = doc.clip.key;
          show(video, label, current, doc.clip.captured_at);
          video.src = "/media/clip.mp4?key=" + encodeURIComponent(current);
          video.play().catch(() => {});
        }
      } catch (e) { /* the next poll tries again */ }
      setTimeout(poll, document.hidden ? 10000 : 2000);
    }
    poll();
  }
  document.querySelectorAll("video[data-live-device]").forEach(follow);
})();
