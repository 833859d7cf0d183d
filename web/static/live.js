// Near-live view, for one camera or a grid of all: each video polls its camera's newest clip and plays each new
// one as it arrives (clip length + ingest behind real time). Everything comes from this origin.
(function () {
  function follow(video) {
    const device = video.dataset.liveDevice;
    const label = video.parentElement.querySelector(".now-playing");
    let current = null;
    let hls = null;
    function play(clip) {
      const q = "?key=" + encodeURIComponent(clip.key);
      current = clip.key;
      video.dataset.key = clip.key;
      label.textContent = new Date(clip.captured_at).toLocaleString();
      if (hls) { hls.destroy(); hls = null; }
      if (window.Hls && window.Hls.isSupported()) {
        hls = new window.Hls({ enableWorker: false });
        hls.loadSource("/media/clip.m3u8" + q);
        hls.attachMedia(video);
      } else {
        video.src = "/media/clip.m3u8" + q;
      }
      video.play().catch(() => {});
    }
    async function poll() {
      try {
        const r = await fetch("/media/latest.json?device=" + encodeURIComponent(device), { credentials: "same-origin" });
        if (r.ok) {
          const doc = await r.json();
          if (doc.clip && doc.clip.key !== current) play(doc.clip);
        }
      } catch (e) { /* the next poll tries again */ }
      setTimeout(poll, document.hidden ? 10000 : 2000);
    }
    poll();
  }
  document.querySelectorAll("video[data-live-device]").forEach(follow);
})();
